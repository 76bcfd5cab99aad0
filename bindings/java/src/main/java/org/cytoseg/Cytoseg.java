package org.cytoseg;

import java.util.Map;

/** Versions and the ONNX Runtime in use. */
public final class Cytoseg {
    private Cytoseg() {}

    /**
     * The ONNX Runtime library to load, in this order: the system property {@code cytoseg.ort},
     * the environment variable {@code CYTOSEG_ORT_LIB}, then (unless {@code ORT_DYLIB_PATH} is
     * set, which the engine honours) the copy bundled in the jar; null lets the engine search
     * ({@code ORT_DYLIB_PATH}, next to libcytoseg, then the {@code onnxruntime} package of the
     * {@code python3} on PATH). Only the first load in a process counts.
     *
     * @return a path or null
     */
    public static String ortLibrary() {
        String p = System.getProperty("cytoseg.ort");
        if (p == null || p.isEmpty()) {
            p = System.getenv("CYTOSEG_ORT_LIB");
        }
        if (p != null && !p.isEmpty()) {
            return p;
        }
        String env = System.getenv("ORT_DYLIB_PATH");
        if (env != null && !env.isEmpty()) {
            return null;
        }
        Native.ensureLoaded();
        return NativeLoader.bundledOrt();
    }

    /** @return the engine version */
    public static String version() {
        return Native.version();
    }

    /**
     * Loads ONNX Runtime (once per process) and describes it.
     *
     * @return version, library, provider.NAME=true|false
     */
    public static Map<String, String> runtime() {
        return Native.parseKeyValues(Native.runtimeInfo(ortLibrary()));
    }
}
