package org.cytoseg;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The native entry points of libcytoseg (Rust, {@code src/jni}). Prefer {@link Model},
 * {@link Cytoseg} and {@link Evaluation}, which add lifetime management and checks. Every method
 * throws {@link CytosegException} for engine errors, {@link NullPointerException} and
 * {@link IllegalArgumentException} for bad arguments and {@link IllegalStateException} for a
 * closed model or an internal error; none can crash the JVM.
 */
public final class Native {
    static {
        NativeLoader.load();
    }

    private Native() {}

    /** Makes sure the library is loaded (it is on first use of this class). */
    public static void ensureLoaded() {
        // The static initializer did the work.
    }

    /** @return the engine version */
    public static native String version();

    /**
     * Loads ONNX Runtime and describes it.
     *
     * @param ortLib library path, or null for the engine's search
     * @return key=value lines: version, library, provider.NAME=true|false
     */
    public static native String runtimeInfo(String ortLib);

    /** @return name=folder lines of the model packages the engine finds by name */
    public static native String listModels();

    /**
     * @param name null or empty for the user's models folder itself; else a new clone's name
     * @return the user's models folder, or the folder the clone {@code name} is to be saved to
     *     (shared with the command line and napari; {@code CYTOSEG_USER_MODELS} overrides it)
     * @throws CytosegException when the name is not a plain folder name or is taken
     */
    public static native String userModelDir(String name);

    /** @return the device names the engine accepts, one per line (auto, cpu, cuda, ...) */
    public static native String deviceNames();

    /** @return the names of the segment functions' {@code double[] params} values, one per line, in order */
    public static native String segmentParamNames();

    /**
     * @param nameOrPath a model package folder (bundled names: resolve with {@link Models#resolve})
     * @return its manifest's defaults as key=value lines (diameter, cellprob_threshold, flow_threshold, ...)
     */
    public static native String modelDefaults(String nameOrPath);

    /** @return the names of {@link #evaluate}'s values per threshold, one per line, in order */
    public static native String matchingFields();

    /** Panics inside the library on purpose (tests only). */
    public static native void panicForTest();

    /**
     * @param nameOrPath bundled name or package folder
     * @param device auto, cpu, cuda, tensorrt, coreml or directml
     * @param ortLib ONNX Runtime library, or null for the engine's search
     * @param threads ONNX Runtime threads, 0 = one per core
     * @return a model handle
     */
    public static native long modelLoad(String nameOrPath, String device, String ortLib, int threads);

    /** @param handle a handle from modelLoad; 0 is a no-op */
    public static native void modelFree(long handle);

    /** @return key=value description of the model (see src/jni/model.rs) */
    public static native String modelInfo(long handle);

    /**
     * Segments 8-bit interleaved pixels; returns the object count. {@code flows} (nullable,
     * 3*width*height) receives the network's dY, dX and cell-probability planes (for
     * {@link #imageQc}).
     */
    public static native int segmentBytes(long handle, byte[] pixels, int width, int height, int channels,
            double[] params, int[] labels, float[] flows, ProgressListener listener);

    /** Segments 16-bit (unsigned) interleaved pixels; returns the object count. */
    public static native int segmentShorts(long handle, short[] pixels, int width, int height, int channels,
            double[] params, int[] labels, float[] flows, ProgressListener listener);

    /** Segments 32-bit float interleaved pixels; returns the object count. */
    public static native int segmentFloats(long handle, float[] pixels, int width, int height, int channels,
            double[] params, int[] labels, float[] flows, ProgressListener listener);

    /**
     * Segments an 8-bit z-stack ({@code planes} planes of interleaved pixels, one after the
     * other) into 3-D objects; returns the object count. {@code mode} 0 is Cellpose's do_3D
     * ({@code modeValue} the anisotropy, 0 = 1), 1 its stitching mode ({@code modeValue} the
     * IoU threshold). {@code labels}: planes*width*height; {@code flows} (nullable):
     * 4*planes*width*height (do_3D: dZ, dY, dX, cellprob) or 3*planes*width*height (stitching:
     * each plane's dY, dX, cellprob).
     */
    public static native int segmentVolumeBytes(long handle, byte[] pixels, int width, int height, int planes,
            int channels, double[] params, int mode, double modeValue, int[] labels, float[] flows,
            ProgressListener listener);

    /** Segments a 16-bit (unsigned) z-stack into 3-D objects, as {@link #segmentVolumeBytes}. */
    public static native int segmentVolumeShorts(long handle, short[] pixels, int width, int height, int planes,
            int channels, double[] params, int mode, double modeValue, int[] labels, float[] flows,
            ProgressListener listener);

    /** Segments a 32-bit float z-stack into 3-D objects, as {@link #segmentVolumeBytes}. */
    public static native int segmentVolumeFloats(long handle, float[] pixels, int width, int height, int planes,
            int channels, double[] params, int mode, double modeValue, int[] labels, float[] flows,
            ProgressListener listener);

    /**
     * Scores predicted labels against ground truth (stardist.matching 0.9.2). The label arrays
     * are read in place (a JNI critical section): no other thread may write them during the call.
     *
     * @return 13 values per threshold then the foreground Dice (see {@link Evaluation})
     */
    public static native double[] evaluate(int[] truth, int[] pred, double[] thresholds, String criterion);

    /**
     * Links the per-plane 2-D labels of a z-stack into 3-D labels exactly as cellpose 4.2.1.1's
     * stitching mode (stitch3D by IoU, then 3-D hole filling and size filter; {@code cytoseg
     * stitch}).
     *
     * @param labels planes*width*height labels, plane after plane, each plane numbered on its own
     * @param planes number of planes
     * @param width plane width
     * @param height plane height
     * @param stitchThreshold smallest IoU that links two masks of consecutive planes (above 0)
     * @param minSize objects with fewer voxels are removed; 0 or less keeps all
     * @return a new array of 3-D labels
     */
    public static native int[] stitchLabels(int[] labels, int planes, int width, int height, double stitchThreshold,
            long minSize);

    /**
     * Measures every object of a label image (the engine's measurement table, as in
     * {@code <stem>_objects.csv}). {@code labels} and {@code image} are read in place (a JNI
     * critical section): no other thread may write them during the call.
     *
     * @param labels width*height labels, 0 = background
     * @param image intensity image (byte[], short[] or float[], width*height*channels
     *     interleaved) or null
     * @param channels samples per pixel of image
     * @param pixelWidth pixel width in unit
     * @param pixelHeight pixel height in unit
     * @param unit length unit, "pixel" when uncalibrated
     * @return the table
     */
    public static native Table measure(int[] labels, int width, int height, Object image, int channels,
            double pixelWidth, double pixelHeight, String unit);

    /**
     * Measures every 3-D object of a label stack (the engine's 3-D measurement,
     * {@code regionprops_table} on the volume: {@code area} is the volume, centroids and boxes in
     * z, y, x). The arrays are read in place (a JNI critical section): no other thread may
     * write them during the call.
     *
     * @param labels planes*width*height labels, plane after plane, 0 = background
     * @param image intensity stack (byte[], short[] or float[], the same planes with
     *     {@code channels} interleaved samples) or null
     * @param zSpacing distance between planes in unit
     * @return the table
     */
    public static native Table measureVolume(int[] labels, int width, int height, int planes, Object image,
            int channels, double pixelWidth, double pixelHeight, double zSpacing, String unit);

    /**
     * The quality-control measures of one image and its objects (the engine's
     * {@code image_qc_table}, as the QC columns of {@code summary.csv}): a one-row table with
     * {@code objects}, {@code focus_laplacian}, {@code focus_spectrum_slope},
     * {@code saturated_fraction}, {@code background}, {@code signal}, {@code noise},
     * {@code contrast_to_noise}, {@code dynamic_range}, {@code area_iqr}, {@code mean_cellprob},
     * {@code flow_error_median}, {@code flow_qc_removed_fraction} (NaN where undefined).
     * {@code labels} and {@code image} are read in place (a JNI critical section): no other
     * thread may write them during the call.
     *
     * @param labels width*height labels, 0 = background
     * @param image byte[], short[] or float[], width*height*channels interleaved
     * @param channels samples per pixel of image
     * @param channel the channel measured (0-based), or -1 for the mean of all
     * @param flows null, or the 3*width*height floats segmentation wrote (gives mean_cellprob
     *     and flow_error_median)
     * @param pixelWidth pixel width in unit
     * @param pixelHeight pixel height in unit
     * @param unit length unit, "pixel" when uncalibrated
     * @return the one-row table
     */
    public static native Table imageQc(int[] labels, int width, int height, Object image, int channels, int channel,
            float[] flows, double pixelWidth, double pixelHeight, String unit);

    /**
     * Trains the per-object classifier on objects picked in one image and writes the model file
     * (src/jni/classify.rs): the features of {@code cytoseg segment}'s objects tables
     * (calibrated, texture included), so the model also applies to folder runs. The image and
     * labels are copied before training.
     *
     * @param image byte[], short[] or float[], width*height*channels interleaved
     * @param channels samples per pixel of image
     * @param labels width*height labels, 0 = background
     * @param pickLabels the picked objects' labels
     * @param pickClasses their classes (same length)
     * @param name the image's name (messages, the model's training record)
     * @param pixelWidth pixel width in unit
     * @param pixelHeight pixel height in unit
     * @param unit length unit, "pixel" when uncalibrated
     * @param trees trees, 0 = 200
     * @param seed random seed
     * @param folds cross-validation folds, 0 = 5
     * @param modelOut the model file to write
     * @return the model's description as key=value lines (see {@link Classifier.Info})
     */
    public static native String classifierTrain(Object image, int channels, int[] labels, int width, int height,
            int[] pickLabels, String[] pickClasses, String name, double pixelWidth, double pixelHeight, String unit,
            int trees, long seed, int folds, String modelOut);

    /**
     * A classifier model file's description.
     *
     * @param model the model file
     * @return key=value lines (see {@link Classifier.Info})
     */
    public static native String classifierInfo(String model);

    /**
     * Classifies every object of a label image with a model file (the classes
     * {@code cytoseg classify apply} writes for the same image and labels).
     *
     * @param model the model file
     * @param image byte[], short[] or float[], width*height*channels interleaved
     * @param channels samples per pixel
     * @param labels width*height labels
     * @param pixelWidth pixel width in unit
     * @param pixelHeight pixel height in unit
     * @param unit length unit, "pixel" when uncalibrated
     * @return one row per object in label order: label, class_index (-1 = unclassified),
     *     class_probability
     */
    public static native Table classifyLabels(String model, Object image, int channels, int[] labels, int width,
            int height, double pixelWidth, double pixelHeight, String unit);

    /**
     * Writes the QC report of a segmentation run ({@code out/qc/qc_report.html} and CSV tables),
     * as {@code cytoseg qc}: see {@link QcOptions}.
     *
     * @param out the run's output folder (holding summary.csv)
     * @param optionsJson null or {@link QcOptions#toJson()}
     * @return key=value lines: html, images, groups, flagged, drifting, confounded
     */
    public static native String qcReport(String out, String optionsJson);

    /**
     * The engine's batch run into a folder (src/jni/batch.rs): see {@link Model#segmentFolder}.
     *
     * @return {ok, skipped, failed, cancelled}
     */
    public static native long[] segmentFolder(long handle, String[] inputs, String out, double[] params,
            boolean recursive, boolean overwrite, int jobs, int stackMode, double stackValue, String invocation,
            BatchListener listener);

    /**
     * Clones a model and fine-tunes it on annotated images into a new model package folder, as
     * {@code cytoseg train} does (src/jni/train.rs). Runs on the calling thread for minutes to
     * hours; the listener gets every step and can cancel.
     *
     * @param from parent model: a bundled name or a package folder (only read)
     * @param images folder of training images
     * @param labels folder of their label images, paired by file stem
     * @param masks folder of annotated-region masks, or null
     * @param valImages validation images folder, or null (one image in ten held out when there
     *     are at least ten)
     * @param valLabels validation labels folder, or null
     * @param out the new package's folder
     * @param options numeric options, built by name from {@link #trainDefaults()}
     * @param resume continue from the checkpoint in {@code out}
     * @param invocation what runs the training (recorded in the lineage), or null
     * @param listener progress and cancel, or null
     * @return {steps, finalTrainLoss, finalValLoss (NaN without validation), diameter,
     *     trainImages, valImages, wallS}
     */
    public static native double[] train(String from, String images, String labels, String masks,
            String valImages, String valLabels, String out, double[] options, boolean resume,
            String invocation, TrainListener listener);

    /**
     * The default training options as key=value lines, in the order of {@link #train}'s
     * {@code options} array.
     *
     * @return key=value lines
     */
    public static native String trainDefaults();

    /**
     * The training options array for {@link #train}: the defaults, with {@code changes}
     * (option name to value) applied.
     *
     * @param changes options to change, by name (see {@link #trainDefaults()})
     * @return the options array
     */
    public static double[] trainOptions(Map<String, Double> changes) {
        Map<String, String> defaults = parseKeyValues(trainDefaults());
        for (String k : changes.keySet()) {
            if (!defaults.containsKey(k)) {
                throw new IllegalArgumentException("unknown training option " + k + "; known: " + defaults.keySet());
            }
        }
        double[] out = new double[defaults.size()];
        int i = 0;
        for (Map.Entry<String, String> e : defaults.entrySet()) {
            Double v = changes.get(e.getKey());
            out[i++] = v != null ? v : Double.parseDouble(e.getValue());
        }
        return out;
    }

    /**
     * Parses the key=value lines the library returns (the value is the rest of the line).
     *
     * @param text lines
     * @return the pairs in order
     */
    public static Map<String, String> parseKeyValues(String text) {
        Map<String, String> out = new LinkedHashMap<>();
        if (text == null) {
            return out;
        }
        for (String line : text.split("\n")) {
            int eq = line.indexOf('=');
            if (eq > 0) {
                out.put(line.substring(0, eq), line.substring(eq + 1));
            }
        }
        return out;
    }
}
