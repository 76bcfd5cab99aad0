package org.cytoseg;

import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Locale;

/**
 * Loads libcytoseg, in this order:
 * <ol>
 *   <li>the file named by the system property {@code cytoseg.library} or the environment
 *       variable {@code CYTOSEG_LIBRARY};</li>
 *   <li>{@code /natives/<os>_<arch>/<library file>} inside this jar (os: linux, macos, windows;
 *       arch: x86_64, aarch64), extracted to a fresh temporary folder together with an ONNX
 *       Runtime library bundled beside it (the file named in {@code onnxruntime.txt}, or
 *       {@code libonnxruntime.so}, {@code libonnxruntime.dylib}, {@code onnxruntime.dll}),
 *       where the engine looks for it;</li>
 *   <li>{@code System.loadLibrary("cytoseg")} ({@code java.library.path}).</li>
 * </ol>
 */
public final class NativeLoader {
    private static boolean loaded;
    private static String source = "";
    private static String bundledOrt;

    private NativeLoader() {}

    /** @return the platform folder name, e.g. linux_x86_64 */
    public static String platform() {
        String os = System.getProperty("os.name", "").toLowerCase(Locale.ROOT);
        String arch = System.getProperty("os.arch", "").toLowerCase(Locale.ROOT);
        String o = os.contains("win") ? "windows" : (os.contains("mac") || os.contains("darwin")) ? "macos" : "linux";
        String a = (arch.equals("amd64") || arch.equals("x86_64")) ? "x86_64"
                : (arch.equals("aarch64") || arch.equals("arm64")) ? "aarch64" : arch;
        return o + "_" + a;
    }

    /** @return the ONNX Runtime extracted from this jar (after {@link #load()}), or null */
    public static synchronized String bundledOrt() {
        return bundledOrt;
    }

    /** @return where the library was loaded from (after {@link #load()}) */
    public static synchronized String source() {
        return source;
    }

    private static String ortFileName() {
        String p = platform();
        return p.startsWith("windows") ? "onnxruntime.dll" : p.startsWith("macos") ? "libonnxruntime.dylib" : "libonnxruntime.so";
    }

    /** Loads the library once; later calls do nothing. */
    public static synchronized void load() {
        if (loaded) {
            return;
        }
        String explicit = System.getProperty("cytoseg.library");
        if (explicit == null || explicit.isEmpty()) {
            explicit = System.getenv("CYTOSEG_LIBRARY");
        }
        if (explicit != null && !explicit.isEmpty()) {
            File f = new File(explicit);
            if (!f.isFile()) {
                throw new UnsatisfiedLinkError("cytoseg.library / CYTOSEG_LIBRARY names " + explicit + ", which is not a file");
            }
            System.load(f.getAbsolutePath());
            source = f.getAbsolutePath();
            loaded = true;
            return;
        }
        String dir = "/natives/" + platform() + "/";
        String lib = System.mapLibraryName("cytoseg");
        if (NativeLoader.class.getResource(dir + lib) != null) {
            try {
                Path tmp = Files.createTempDirectory("cytoseg-natives-");
                // Registered first, so deleted last (deleteOnExit runs in reverse order), once
                // the files in it are gone.
                tmp.toFile().deleteOnExit();
                extractOrt(dir, tmp);
                Path path = extract(dir + lib, tmp);
                path.toFile().deleteOnExit();
                System.load(path.toAbsolutePath().toString());
                source = "jar:" + dir + lib + " (extracted to " + tmp + ")";
                loaded = true;
                return;
            } catch (IOException e) {
                throw new UnsatisfiedLinkError("could not extract " + dir + lib + " from the cytoseg jar: " + e);
            }
        }
        try {
            System.loadLibrary("cytoseg");
            source = "java.library.path";
            loaded = true;
        } catch (UnsatisfiedLinkError e) {
            UnsatisfiedLinkError err = new UnsatisfiedLinkError("libcytoseg for " + platform()
                    + " is not in this jar (" + dir + lib + ") nor on java.library.path; set -Dcytoseg.library=/path/to/"
                    + lib + " or CYTOSEG_LIBRARY");
            err.initCause(e);
            throw err;
        }
    }

    /**
     * Extracts a bundled ONNX Runtime next to libcytoseg, where the engine looks for it. The
     * jar's {@code onnxruntime.txt} names the versioned file (e.g. libonnxruntime.so.1.31.1);
     * the plain name links to it, so that the engine reads the version from the file name.
     */
    private static void extractOrt(String dir, Path tmp) throws IOException {
        String plain = ortFileName();
        String versioned = null;
        try (InputStream in = NativeLoader.class.getResourceAsStream(dir + "onnxruntime.txt")) {
            if (in != null) {
                versioned = new String(in.readAllBytes(), java.nio.charset.StandardCharsets.UTF_8).trim();
            }
        }
        if (versioned == null || versioned.isEmpty() || versioned.contains("/")) {
            Path p = extract(dir + plain, tmp);
            if (p != null) {
                p.toFile().deleteOnExit();
                bundledOrt = p.toString();
            }
            return;
        }
        Path real = extract(dir + versioned, tmp);
        if (real == null) {
            return;
        }
        real.toFile().deleteOnExit();
        Path link = tmp.resolve(plain);
        try {
            Files.createSymbolicLink(link, real.getFileName());
        } catch (IOException | UnsupportedOperationException e) {
            Files.copy(real, link, StandardCopyOption.REPLACE_EXISTING);
        }
        link.toFile().deleteOnExit();
        bundledOrt = link.toString();
    }

    private static Path extract(String resource, Path dir) throws IOException {
        try (InputStream in = NativeLoader.class.getResourceAsStream(resource)) {
            if (in == null) {
                return null;
            }
            Path out = dir.resolve(resource.substring(resource.lastIndexOf('/') + 1));
            Files.copy(in, out, StandardCopyOption.REPLACE_EXISTING);
            return out;
        }
    }
}
