package org.cytoseg.ij;

import ij.IJ;
import ij.Macro;
import ij.macro.Interpreter;
import ij.plugin.BrowserLauncher;
import java.awt.GraphicsEnvironment;
import java.io.File;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.cytoseg.CytosegException;
import org.cytoseg.Model;
import org.cytoseg.Models;
import org.cytoseg.Native;

/** Model choice, loading with CPU fallback, and a one-model cache shared by the commands. */
final class Engine {
    /** Choice meaning "a package folder given in model_file". */
    static final String FROM_FILE = "file";
    /**
     * Execution devices offered: the engine's list (no copy of it here). When the native
     * library cannot load, only "auto" is offered and running the command reports why.
     *
     * @return device names, "auto" first
     */
    static String[] devices() {
        try {
            return Native.deviceNames().split("\n");
        } catch (LinkageError | RuntimeException e) {
            return new String[] {"auto"};
        }
    }

    private static Model cached;
    private static String cachedKey;

    private Engine() {}

    /**
     * The model choice of every command: {@link Models#available()} (the bundled models, then
     * the user's clones and other packages the engine finds by name), then "file".
     *
     * @return model names then "file"
     */
    static String[] modelChoices() {
        List<String> c = new ArrayList<>(Models.available());
        c.remove(FROM_FILE);
        if (c.isEmpty()) {
            c.add("nuclei");
        }
        c.add(FROM_FILE);
        return c.toArray(new String[0]);
    }

    /**
     * @param model a choice of {@link #modelChoices()}
     * @param file the package folder when model is "file"
     * @return what to load
     */
    static String modelSpec(String model, String file) {
        if (FROM_FILE.equals(model)) {
            if (file == null || file.trim().isEmpty()) {
                throw new CytosegException(CytosegException.MODEL,
                        "model=file needs model_file: the folder of a model package (holding manifest.json)");
            }
            if (!new java.io.File(file.trim()).exists()) {
                throw new CytosegException(CytosegException.MODEL, "model_file: " + file.trim()
                        + " does not exist (choose the folder of a model package, holding manifest.json)");
            }
            return file.trim();
        }
        return model;
    }

    /**
     * The defaults of a model choice's manifest (cellprob_threshold, flow_threshold, ...), so
     * that dialogs start from the model's own values; empty when the choice cannot be read
     * (the dialog then shows Cellpose's defaults and the error comes when it runs).
     *
     * @param model a choice of {@link #modelChoices()}
     * @param file the package folder when model is "file"
     * @return key to value
     */
    static java.util.Map<String, String> modelDefaults(String model, String file) {
        try {
            return Native.parseKeyValues(Native.modelDefaults(Models.resolve(modelSpec(model, file))));
        } catch (RuntimeException e) {
            return new java.util.HashMap<>();
        }
    }

    /**
     * A model default as a number.
     *
     * @param defaults from {@link #modelDefaults}
     * @param key its name
     * @param fallback when absent
     * @return the value
     */
    static double number(java.util.Map<String, String> defaults, String key, double fallback) {
        try {
            return Double.parseDouble(defaults.getOrDefault(key, Double.toString(fallback)));
        } catch (NumberFormatException e) {
            return fallback;
        }
    }

    /**
     * Loads (or reuses) a model. A GPU device that is unavailable falls back to the CPU with a
     * line in the Log window.
     *
     * @param spec bundled name or folder
     * @param device device name
     * @return the model, owned by the cache (do not close)
     */
    static synchronized Model load(String spec, String device) {
        String key = spec + "\u0000" + device;
        if (cached != null && key.equals(cachedKey)) {
            return cached;
        }
        if (cached != null) {
            cached.close();
            cached = null;
            cachedKey = null;
        }
        Model m;
        try {
            m = Model.load(spec, device, 0);
        } catch (CytosegException e) {
            if (e.status() != CytosegException.RUNTIME || "cpu".equals(device) || "auto".equals(device)) {
                throw e;
            }
            IJ.log("cytoseg: device " + device + " is not available (" + firstLine(e.getMessage())
                    + "); running on the CPU instead");
            m = Model.load(spec, "cpu", 0);
        }
        if ("auto".equals(device)) {
            IJ.log("cytoseg: model " + m.info().get("name") + " " + m.info().get("version") + " on " + m.device()
                    + " (ONNX Runtime " + m.info().get("onnxruntime_version") + ")");
        }
        cached = m;
        cachedKey = key;
        return m;
    }

    /**
     * Reports an error: a dialog in an interactive ImageJ/Fiji; on standard error and in the Log
     * when no one can close a dialog (command-line {@code -batch} or headless, where a modal
     * dialog would hang ImageJ), then stops the running macro.
     *
     * @param message what went wrong
     */
    static void error(String message) {
        if (!unattended()) {
            IJ.error("cytoseg", message);
            return;
        }
        System.err.println("cytoseg: " + message);
        IJ.log("cytoseg error: " + message);
        if (IJ.isMacro()) {
            Macro.abort();
        }
    }

    /**
     * Whether no one is there to answer a dialog or read a browser page: headless, or a
     * command-line {@code -batch} macro.
     *
     * @return true when unattended
     */
    static boolean unattended() {
        return GraphicsEnvironment.isHeadless()
                || (IJ.getInstance() == null && (IJ.isMacro() || Interpreter.isBatchMode()));
    }

    /**
     * Reports a written QC report: its verdict and path in the Log, and the page opened in the
     * browser ({@link BrowserLauncher}) unless unattended or {@code open} is false.
     *
     * @param verdict what {@link org.cytoseg.Qc#report} returned
     * @param open open the page in the browser
     */
    static void showQcReport(Map<String, String> verdict, boolean open) {
        String html = verdict.get("html");
        IJ.log("cytoseg: QC: " + verdict.get("images") + " image(s) in " + verdict.get("groups") + " group(s); "
                + verdict.get("flagged") + " flagged, " + verdict.get("drifting") + " drifting measure(s)"
                + ("true".equals(verdict.get("confounded")) ? "; treatments confounded with groups" : "")
                + "; report: " + html);
        if (!open || unattended()) {
            return;
        }
        try {
            BrowserLauncher.openURL(new File(html).toURI().toString());
        } catch (IOException e) {
            IJ.log("cytoseg: could not open a browser (" + e.getMessage() + "); open " + html + " yourself");
        }
    }

    static String firstLine(String s) {
        if (s == null) {
            return "";
        }
        int nl = s.indexOf('\n');
        return nl < 0 ? s : s.substring(0, nl);
    }

    /** Releases the cached model (tests). */
    static synchronized void release() {
        if (cached != null) {
            cached.close();
            cached = null;
            cachedKey = null;
        }
    }
}
