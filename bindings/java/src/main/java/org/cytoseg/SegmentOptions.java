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
    /** Tile edge in pixels (multiple of 16); 0 = the model's. */
    public int tileSize = 0;
    /** Fractional tile overlap; negative = the model's. */
    public double tileOverlap = -1;
    /** Tiles per network call; 0 = 8. */
    public int batchSize = 0;

    /** @return the array layout the native library reads (src/jni/model.rs, params_from) */
    double[] toArray() {
        return new double[] {channel, diameter, cellprobThreshold, flowThreshold, niter, minSize, maxSizeFraction,
            tileSize, tileOverlap, batchSize};
    }
}
