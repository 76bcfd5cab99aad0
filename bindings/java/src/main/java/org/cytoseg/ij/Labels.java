package org.cytoseg.ij;

import ij.ImagePlus;
import ij.ImageStack;
import ij.gui.Roi;
import ij.measure.Calibration;
import ij.plugin.filter.ThresholdToSelection;
import ij.process.ByteProcessor;
import ij.process.FloatProcessor;
import ij.process.ImageProcessor;
import ij.process.LUT;
import ij.process.ShortProcessor;
import java.awt.Color;
import java.awt.Rectangle;
import java.util.ArrayList;
import java.util.List;

/** Label images for ImageJ: building the image, its colour table and one ROI per object. */
public final class Labels {
    private Labels() {}

    /**
     * A glasbey-like colour table: 0 black, then well-separated colours (golden-ratio hue steps
     * with alternating saturation and brightness), so that touching objects differ.
     *
     * @return the LUT
     */
    public static LUT glasbeyLike() {
        byte[] r = new byte[256], g = new byte[256], b = new byte[256];
        double hue = 0.0;
        for (int i = 1; i < 256; i++) {
            hue = (hue + 0.618033988749895) % 1.0;
            float s = (i % 3 == 0) ? 0.55f : 0.9f;
            float v = (i % 2 == 0) ? 0.8f : 1.0f;
            int rgb = Color.HSBtoRGB((float) hue, s, v);
            r[i] = (byte) ((rgb >> 16) & 0xff);
            g[i] = (byte) ((rgb >> 8) & 0xff);
            b[i] = (byte) (rgb & 0xff);
        }
        return new LUT(r, g, b);
    }

    /**
     * One processor for a plane of labels: 16-bit when every label fits, else 32-bit float
     * (exact up to 16,777,216).
     *
     * @param labels width*height labels
     * @param width width
     * @param height height
     * @param sixteen whether to make a 16-bit processor
     * @return the processor
     */
    public static ImageProcessor processor(int[] labels, int width, int height, boolean sixteen) {
        if (sixteen) {
            short[] s = new short[labels.length];
            for (int i = 0; i < s.length; i++) {
                s[i] = (short) labels[i];
            }
            return new ShortProcessor(width, height, s, null);
        }
        float[] f = new float[labels.length];
        for (int i = 0; i < f.length; i++) {
            f[i] = labels[i];
        }
        return new FloatProcessor(width, height, f, null);
    }

    /**
     * Builds the label image of a segmented image.
     *
     * @param title title
     * @param planes labels per plane, in (t, z) order
     * @param width width
     * @param height height
     * @param slices z planes
     * @param frames t frames
     * @param maxLabel the largest label over all planes
     * @param cal calibration to copy (may be null)
     * @return the image (not shown)
     */
    public static ImagePlus image(String title, List<int[]> planes, int width, int height, int slices, int frames,
            int maxLabel, Calibration cal) {
        boolean sixteen = maxLabel <= 65535;
        ImageStack stack = new ImageStack(width, height);
        for (int[] p : planes) {
            stack.addSlice(processor(p, width, height, sixteen));
        }
        ImagePlus out = new ImagePlus(title, stack);
        if (planes.size() > 1) {
            out.setDimensions(1, slices, frames);
            if (slices > 1 && frames > 1) {
                out.setOpenAsHyperStack(true);
            }
        }
        if (cal != null) {
            Calibration c = cal.copy();
            c.disableDensityCalibration();
            out.setCalibration(c);
        }
        LUT lut = glasbeyLike();
        double max = Math.max(255, maxLabel);
        for (int i = 1; i <= stack.getSize(); i++) {
            stack.getProcessor(i).setLut(lut);
        }
        out.getProcessor().setLut(lut);
        out.setDisplayRange(0, max);
        return out;
    }

    /**
     * One ROI per object of a plane (traced from its mask inside its bounding box).
     *
     * @param labels width*height labels, 0 background
     * @param width width
     * @param height height
     * @param count the largest label
     * @return ROIs indexed by label (index 0 and absent labels are null)
     */
    public static Roi[] rois(int[] labels, int width, int height, int count) {
        int[] x0 = new int[count + 1], y0 = new int[count + 1], x1 = new int[count + 1], y1 = new int[count + 1];
        java.util.Arrays.fill(x0, Integer.MAX_VALUE);
        java.util.Arrays.fill(y0, Integer.MAX_VALUE);
        java.util.Arrays.fill(x1, -1);
        java.util.Arrays.fill(y1, -1);
        for (int y = 0, i = 0; y < height; y++) {
            for (int x = 0; x < width; x++, i++) {
                int l = labels[i];
                if (l > 0 && l <= count) {
                    if (x < x0[l]) x0[l] = x;
                    if (x > x1[l]) x1[l] = x;
                    if (y < y0[l]) y0[l] = y;
                    if (y > y1[l]) y1[l] = y;
                }
            }
        }
        Roi[] out = new Roi[count + 1];
        ThresholdToSelection tts = new ThresholdToSelection();
        for (int l = 1; l <= count; l++) {
            if (x1[l] < 0) {
                continue;
            }
            int w = x1[l] - x0[l] + 1, h = y1[l] - y0[l] + 1;
            ByteProcessor mask = new ByteProcessor(w, h);
            byte[] m = (byte[]) mask.getPixels();
            for (int y = 0; y < h; y++) {
                int row = (y + y0[l]) * width + x0[l];
                for (int x = 0; x < w; x++) {
                    if (labels[row + x] == l) {
                        m[y * w + x] = (byte) 255;
                    }
                }
            }
            mask.setThreshold(255, 255, ImageProcessor.NO_LUT_UPDATE);
            Roi roi = tts.convert(mask);
            if (roi != null) {
                roi.setLocation(roi.getXBase() + x0[l], roi.getYBase() + y0[l]);
                out[l] = roi;
            }
        }
        return out;
    }

    /**
     * Reads a label image plane as ints: 8/16-bit as unsigned, 32-bit float values that must
     * be non-negative integers.
     *
     * @param ip the plane
     * @param what name for messages
     * @return width*height labels
     * @throws IllegalArgumentException for RGB or non-integer values
     */
    public static int[] toInts(ImageProcessor ip, String what) {
        Object px = ip.getPixels();
        int n = ip.getWidth() * ip.getHeight();
        int[] out = new int[n];
        if (px instanceof byte[]) {
            byte[] b = (byte[]) px;
            for (int i = 0; i < n; i++) out[i] = b[i] & 0xff;
        } else if (px instanceof short[]) {
            short[] s = (short[]) px;
            for (int i = 0; i < n; i++) out[i] = s[i] & 0xffff;
        } else if (px instanceof float[]) {
            float[] f = (float[]) px;
            for (int i = 0; i < n; i++) {
                float v = f[i];
                if (!(v >= 0) || v != Math.rint(v) || v > Integer.MAX_VALUE) {
                    throw new IllegalArgumentException(what + " holds the value " + v
                            + " at pixel " + (i % ip.getWidth()) + "," + (i / ip.getWidth())
                            + ": label images must hold non-negative integers");
                }
                out[i] = (int) v;
            }
        } else {
            throw new IllegalArgumentException(what + " is an RGB image: a label image must be 8-, 16- or 32-bit");
        }
        return out;
    }

    /**
     * Paints area ROIs into a label image: ROI k of the array (0-based) gets label k + 1, over
     * the pixels of its mask ({@link Roi#getMask()}, the whole bounding rectangle for a
     * rectangle), later ROIs over earlier ones where they overlap; parts outside the image are
     * clipped.
     *
     * @param rois the objects, in order (e.g. the ROI Manager's)
     * @param width image width
     * @param height image height
     * @return width*height labels, 0 background
     * @throws IllegalArgumentException for a ROI that is not an area (line, point)
     */
    public static int[] fromRois(Roi[] rois, int width, int height) {
        int[] out = new int[width * height];
        for (int k = 0; k < rois.length; k++) {
            Roi roi = rois[k];
            if (roi == null || !roi.isArea()) {
                throw new IllegalArgumentException("ROI " + (k + 1) + (roi == null ? "" : " (\"" + roi.getName()
                        + "\", a " + roi.getTypeAsString() + ")") + " is not an area: draw each object as an "
                        + "oval, polygon, freehand or rectangle selection");
            }
            Rectangle b = roi.getBounds();
            ImageProcessor mask = roi.getMask();
            for (int y = Math.max(0, b.y); y < Math.min(height, b.y + b.height); y++) {
                for (int x = Math.max(0, b.x); x < Math.min(width, b.x + b.width); x++) {
                    if (mask == null || mask.get(x - b.x, y - b.y) != 0) {
                        out[y * width + x] = k + 1;
                    }
                }
            }
        }
        return out;
    }

    /**
     * The annotated area of ROI annotations: the bounding rectangle of all ROIs together,
     * clipped to the image. Objects are learned inside it, background is everything else in
     * it; nothing outside it is learned.
     *
     * @param rois the objects
     * @param width image width
     * @param height image height
     * @return the mask: 255 inside the rectangle, 0 outside (all 0 without ROIs)
     */
    public static ByteProcessor annotatedArea(Roi[] rois, int width, int height) {
        Rectangle union = null;
        for (Roi roi : rois) {
            Rectangle b = roi.getBounds();
            union = union == null ? new Rectangle(b) : union.union(b);
        }
        ByteProcessor mask = new ByteProcessor(width, height);
        Rectangle area = union == null ? null : union.intersection(new Rectangle(0, 0, width, height));
        if (area != null && !area.isEmpty()) {
            mask.setValue(255);
            mask.setRoi(area);
            mask.fill();
            mask.resetRoi();
        }
        return mask;
    }

    /** @return a list holding one array (helper for single planes) */
    static List<int[]> single(int[] a) {
        List<int[]> l = new ArrayList<>();
        l.add(a);
        return l;
    }
}
