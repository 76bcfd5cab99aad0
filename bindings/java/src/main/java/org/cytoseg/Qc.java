package org.cytoseg;

import java.util.Map;

/**
 * Quality control (the engine's {@code qc} module): the measures of one image, and the report of
 * a segmentation run. The measures and their formulas: docs/qc.md.
 */
public final class Qc {
    private Qc() {}

    /**
     * The QC measures of one image and its objects as a one-row table (see
     * {@link Native#imageQc}). {@code labels} and {@code image} are read in place: no other thread
     * may write them during the call.
     *
     * @param labels width*height labels, 0 = background
     * @param width image width
     * @param height image height
     * @param image byte[] (8-bit), short[] (16-bit, unsigned) or float[], width*height*channels
     *     interleaved: what was segmented
     * @param channels samples per pixel
     * @param flows null, or the flows {@link Model#segment(Object, int, int, int, SegmentOptions,
     *     int[], float[], ProgressListener)} wrote (then mean_cellprob and flow_error_median are
     *     known)
     * @param pixelWidth pixel width in unit (1 when uncalibrated)
     * @param pixelHeight pixel height in unit
     * @param unit length unit, "pixel" when uncalibrated
     * @return the table: objects, then one column per measure
     */
    public static Table imageQc(int[] labels, int width, int height, Object image, int channels, float[] flows,
            double pixelWidth, double pixelHeight, String unit) {
        return Native.imageQc(labels, width, height, image, channels, -1, flows, pixelWidth, pixelHeight, unit);
    }

    /**
     * Writes the QC report of a segmentation run, as {@code cytoseg qc OUT}:
     * {@code OUT/qc/qc_report.html} (one self-contained page) and the CSV tables.
     *
     * @param out the run's output folder (holding summary.csv)
     * @param options grouping (null = the defaults)
     * @return html (the page's path), images, groups, flagged, drifting, confounded
     * @throws CytosegException when the folder holds no cytoseg summary, a path does not match
     *     the pattern, a group field is unknown, or the report cannot be written
     */
    public static Map<String, String> report(String out, QcOptions options) {
        return Native.parseKeyValues(Native.qcReport(out, options == null ? null : options.toJson()));
    }
}
