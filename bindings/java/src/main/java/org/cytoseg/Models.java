package org.cytoseg;

import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.net.URISyntaxException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;

/**
 * Finds model packages. A bundled name (e.g. "nuclei") resolves to, in order:
 * <ol>
 *   <li>{@code <dir>/<name>} for the folder named by the system property {@code cytoseg.models}
 *       or the environment variable {@code CYTOSEG_MODELS};</li>
 *   <li>{@code models/<name>} next to the cytoseg jar (e.g. {@code Fiji.app/plugins/models/nuclei});</li>
 *   <li>the copy inside the jar ({@code /models/<name>/}), extracted once per session to a
 *       temporary folder;</li>
 *   <li>the name itself, searched by the engine ({@code CYTOSEG_MODELS}, the source tree).</li>
 * </ol>
 * Anything else is taken as a package folder path. No model is ever downloaded. The models a
 * user trained (the clones in the user's models folder, shared with the command line and
 * napari) are found by the engine by name: {@link #available()} lists them for the dialogs,
 * {@link #newModelDir} names the folder of a new one.
 */
public final class Models {
    private static final Map<String, Path> EXTRACTED = new HashMap<>();
    private static final String[] FILES = {"manifest.json", "model.onnx", "model.int8.onnx", "README.md"};

    private Models() {}

    /** @return the names of the models bundled in the jar */
    public static List<String> bundled() {
        List<String> names = new ArrayList<>();
        try (InputStream in = Models.class.getResourceAsStream("/cytoseg-models.txt")) {
            if (in != null) {
                BufferedReader r = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8));
                for (String line; (line = r.readLine()) != null;) {
                    if (!line.trim().isEmpty()) {
                        names.add(line.trim());
                    }
                }
            }
        } catch (IOException e) {
            // No list: no bundled models.
        }
        return names;
    }

    /**
     * Every model the commands offer by name: the bundled ones, then those the engine finds
     * ({@link Native#listModels()}: {@code CYTOSEG_MODELS}, {@code models/} beside the library,
     * the user's models folder with the clones trained in Fiji, napari or {@code cytoseg train
     * --name}), each name once. When the native library cannot load, the bundled names.
     *
     * @return model names, bundled first
     */
    public static List<String> available() {
        LinkedHashSet<String> names = new LinkedHashSet<>(bundled());
        try {
            names.addAll(Native.parseKeyValues(Native.listModels()).keySet());
        } catch (LinkageError | RuntimeException e) {
            // No library: the bundled names only (running a command reports why).
        }
        return new ArrayList<>(names);
    }

    /**
     * The folder a new model (a clone being trained) called {@code name} is saved to: the
     * engine's {@link Native#userModelDir} (a plain, new name in the user's models folder),
     * refusing also the names of the models bundled in this jar, which the engine does not see.
     *
     * @param name the new model's name
     * @return its folder (not created)
     * @throws CytosegException when the name is not a plain folder name or is taken
     */
    public static String newModelDir(String name) {
        if (name == null || name.isEmpty()) {
            throw new CytosegException(CytosegException.INVALID,
                    "the new model needs a name: 1 to 64 letters, digits, '-', '_' or '.'");
        }
        if (bundled().contains(name)) {
            throw new CytosegException(CytosegException.INVALID, "a model named \"" + name
                    + "\" is bundled with the plugin: choose another name");
        }
        return Native.userModelDir(name);
    }

    private static File jarDir() {
        try {
            File f = new File(Models.class.getProtectionDomain().getCodeSource().getLocation().toURI());
            return f.isFile() ? f.getParentFile() : f;
        } catch (URISyntaxException | SecurityException | NullPointerException e) {
            return null;
        }
    }

    /**
     * @param nameOrPath a bundled name or a package folder
     * @return what to pass to the engine: a folder path, or the name itself
     * @throws CytosegException when extraction fails
     */
    public static synchronized String resolve(String nameOrPath) {
        File asPath = new File(nameOrPath);
        if (asPath.isDirectory() || nameOrPath.contains("/") || nameOrPath.contains(File.separator)) {
            return nameOrPath;
        }
        String dir = System.getProperty("cytoseg.models");
        if (dir == null || dir.isEmpty()) {
            dir = System.getenv("CYTOSEG_MODELS");
        }
        if (dir != null && !dir.isEmpty()) {
            for (String d : dir.split(File.pathSeparator)) {
                File f = new File(d, nameOrPath);
                if (new File(f, "manifest.json").isFile()) {
                    return f.getAbsolutePath();
                }
            }
        }
        File jd = jarDir();
        if (jd != null) {
            File f = new File(new File(jd, "models"), nameOrPath);
            if (new File(f, "manifest.json").isFile()) {
                return f.getAbsolutePath();
            }
        }
        Path done = EXTRACTED.get(nameOrPath);
        if (done != null) {
            return done.toString();
        }
        String base = "/models/" + nameOrPath + "/";
        if (Models.class.getResource(base + "manifest.json") != null) {
            try {
                // deleteOnExit deletes in reverse order of registration: register the folders
                // before the files, so that the files go first and the folders are empty.
                Path tmp = Files.createTempDirectory("cytoseg-model-");
                tmp.toFile().deleteOnExit();
                Path pkg = tmp.resolve(nameOrPath);
                Files.createDirectories(pkg);
                pkg.toFile().deleteOnExit();
                for (String name : FILES) {
                    try (InputStream in = Models.class.getResourceAsStream(base + name)) {
                        if (in != null) {
                            Path out = pkg.resolve(name);
                            Files.copy(in, out, StandardCopyOption.REPLACE_EXISTING);
                            out.toFile().deleteOnExit();
                        }
                    }
                }
                EXTRACTED.put(nameOrPath, pkg);
                return pkg.toString();
            } catch (IOException e) {
                throw new CytosegException(300, "could not extract the bundled model " + nameOrPath + ": " + e.getMessage());
            }
        }
        return nameOrPath;
    }
}
