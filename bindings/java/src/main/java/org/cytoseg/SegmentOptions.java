package org.cytoseg;

/**
 * Segmentation settings; each default means "the model's own" (as the {@code cytoseg segment}
 * command without the option).
 */
public final class SegmentOptions {
    /** Image channel for the network (0-based), or -1 for the mean of all channels. */
    public int channel = -1;
    /** Typical object diameter in pixels; 0 = the model's (no resizing). */
    public double diameter = 0;
    /** Cell probability threshold; NaN = the model's. */
    public double cellprobThreshold = Double.NaN;
    /** Flow error threshold (0 = no quality control); NaN = the model's. */
    public double flowThreshold = Double.NaN;
    /** Integration steps; 0 = automatic. */
    public int niter = 0;
    /** Minimum object size in pixels; NaN = the model's. */
    public double minSize = Double.NaN;
    /** Maximum object size as a fraction of the image; NaN = the model's. */
    public double maxSizeFraction = Double.NaN;
    /** Tile edge in pixels (multiple of 16); 0 = the default: the model's with Cellpose tiling, 1024 (the largest) with fast tiling. */
    public int tileSize = 0;
    /** Fractional tile overlap; negative = the model's. */
    public double tileOverlap = -1;
    /** Tiles per network call; 0 = 8. */
    public int batchSize = 0;
    /**
     * How images are cut into network tiles: {@link #TILING_FAST} (default: whole images up to
     * 1024² in one piece, 1.3-2× faster in 2-D) or {@link #TILING_CELLPOSE} (Cellpose's 256² tiles:
     * labels identical to Cellpose's pipeline).
     */
    public int tiling = TILING_FAST;

    /** {@link #tiling}: whole images up to 1024² in one piece, larger ones in few large tiles. */
    public static final int TILING_FAST = 0;
    /** {@link #tiling}: Cellpose's 256² tiles with 10% overlap (Cellpose's labels). */
    public static final int TILING_CELLPOSE = 1;
    /** The names of the {@link #tiling} values, each at its value's position (the CLI's {@code --tiling}). */
    public static final String[] TILING_NAMES = {"fast", "cellpose"};

    /**
     * @param name "fast" or "cellpose"
     * @return its {@link #tiling} value
     * @throws IllegalArgumentException for another name
     */
    public static int tiling(String name) {
        int i = java.util.Arrays.asList(TILING_NAMES).indexOf(name);
        if (i < 0) {
            throw new IllegalArgumentException("tiling=" + name
                    + ": choose fast (default) or cellpose (Cellpose's tiles, for its labels)");
        }
        return i;
    }

    /**
     * Which copy of the network runs: {@link #PRECISION_AUTO} (default: the model's int8 variant
     * on the CPU with fast tiling when its validated AP@0.5 is within 0.005 of float32's, else
     * float32), {@link #PRECISION_FP32} (exact: with Cellpose tiling, Cellpose's labels) or
     * {@link #PRECISION_INT8} (the model's int8 variant; an error for a model without one).
     */
    public int precision = PRECISION_AUTO;

    /** {@link #precision}: int8 where the model has a validated variant, else float32. */
    public static final int PRECISION_AUTO = 0;
    /** {@link #precision}: the float32 network. */
    public static final int PRECISION_FP32 = 1;
    /** {@link #precision}: the model's int8 variant (CPU only). */
    public static final int PRECISION_INT8 = 2;
    /** The names of the {@link #precision} values, each at its value's position (the CLI's {@code --precision}). */
    public static final String[] PRECISION_NAMES = {"auto", "fp32", "int8"};

    /**
     * @param name "auto", "fp32" or "int8"
     * @return its {@link #precision} value
     * @throws IllegalArgumentException for another name
     */
    public static int precision(String name) {
        int i = java.util.Arrays.asList(PRECISION_NAMES).indexOf(name);
        if (i < 0) {
            throw new IllegalArgumentException("precision=" + name
                    + ": choose auto (default), fp32 (exact) or int8");
        }
        return i;
    }

    private static String[] nativeNames;

    /**
     * @return the values in the order the native library reads them, placed by name (the
     *     engine's {@code Native.segmentParamNames}), never by position
     */
    double[] toArray() {
        java.util.Map<String, Double> byName = new java.util.HashMap<>();
        byName.put("channel", (double) channel);
        byName.put("diameter", diameter);
        byName.put("cellprob_threshold", cellprobThreshold);
        byName.put("flow_threshold", flowThreshold);
        byName.put("niter", (double) niter);
        byName.put("min_size", minSize);
        byName.put("max_size_fraction", maxSizeFraction);
        byName.put("tile_size", (double) tileSize);
        byName.put("tile_overlap", tileOverlap);
        byName.put("batch_size", (double) batchSize);
        byName.put("tiling", (double) tiling);
        byName.put("precision", (double) precision);
        String[] names = names();
        double[] out = new double[names.length];
        for (int i = 0; i < names.length; i++) {
            Double v = byName.get(names[i]);
            if (v == null) {
                throw new IllegalStateException("the engine reads a parameter " + names[i]
                        + " that this SegmentOptions does not know: update the Java binding");
            }
            out[i] = v;
        }
        return out;
    }

    private static synchronized String[] names() {
        if (nativeNames == null) {
            nativeNames = Native.segmentParamNames().split("\n");
        }
        return nativeNames;
    }
}
