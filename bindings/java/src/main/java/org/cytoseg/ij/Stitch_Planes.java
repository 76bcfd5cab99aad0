package org.cytoseg.ij;

import ij.IJ;
import ij.ImagePlus;
import ij.Macro;
import ij.Prefs;
import ij.WindowManager;
import ij.gui.GenericDialog;
import ij.plugin.PlugIn;
import java.util.ArrayList;
import java.util.List;
import org.cytoseg.CytosegException;
import org.cytoseg.Native;

/**
 * Plugins &gt; cytoseg &gt; Stitch Planes: the per-plane labels of a z-stack (e.g. from Segment
 * Image on a stack) linked into 3-D objects exactly as Cellpose's stitching mode, shown as a new
 * label stack {@code <title>-3D} with the same calibration. Recordable:
 * {@code run("Stitch Planes", "stitch_threshold=0.25 min_size=15");}
 */
public class Stitch_Planes implements PlugIn {
    private static final String P = "cytoseg.stitch.";

    @Override
    public void run(String arg) {
        ImagePlus imp = WindowManager.getCurrentImage();
        if (imp == null) {
            Engine.error("Stitch Planes needs an open label stack (labels per z plane).");
            return;
        }
        GenericDialog gd = new GenericDialog("cytoseg: Stitch Planes");
        gd.addMessage("Links the masks of consecutive planes of \"" + imp.getTitle() + "\" by IoU (Cellpose's stitch3D).");
        gd.addNumericField("stitch_threshold", Prefs.get(P + "threshold", 0.25), 2);
        gd.addNumericField("min_size (voxels)", Prefs.get(P + "minSize", 15), 0);
        gd.showDialog();
        if (gd.wasCanceled()) {
            return;
        }
        double threshold = gd.getNextNumber();
        long minSize = (long) gd.getNextNumber();
        if (Macro.getOptions() == null) {
            Prefs.set(P + "threshold", threshold);
            Prefs.set(P + "minSize", minSize);
        }
        try {
            ImagePlus out = stitch(imp, threshold, minSize);
            out.show();
            IJ.showStatus(imp.getTitle() + ": " + out.getProperty("cytoseg.objects") + " 3-D objects");
        } catch (CytosegException | IllegalArgumentException e) {
            Engine.error(e.getMessage());
        }
    }

    /**
     * Stitches the planes of a label stack.
     *
     * @param imp a label stack (8-, 16- or 32-bit integer values), one z plane per slice
     * @param threshold smallest IoU that links two masks (above 0)
     * @param minSize objects with fewer voxels are removed; 0 or less keeps all
     * @return the 3-D label stack {@code <title>-3D} (not shown), calibration copied, the largest
     *     label in its property {@code cytoseg.objects}
     */
    public static ImagePlus stitch(ImagePlus imp, double threshold, long minSize) {
        int planes = imp.getStackSize();
        if (planes < 2) {
            throw new IllegalArgumentException("\"" + imp.getTitle() + "\" has one plane; Stitch Planes links the planes of a z-stack");
        }
        if (imp.getNChannels() > 1 || imp.getNFrames() > 1) {
            throw new IllegalArgumentException("\"" + imp.getTitle() + "\" has " + imp.getNChannels() + " channel(s) and "
                    + imp.getNFrames() + " frame(s); Stitch Planes takes one z-stack of labels");
        }
        int w = imp.getWidth(), h = imp.getHeight(), n = w * h;
        int[] stitched = Native.stitchLabels(Evaluate_Labels.volume(imp, "\"" + imp.getTitle() + "\""), planes, w, h,
                threshold, minSize);
        List<int[]> out = new ArrayList<>();
        int max = 0;
        for (int p = 0; p < planes; p++) {
            int[] plane = new int[n];
            System.arraycopy(stitched, p * n, plane, 0, n);
            out.add(plane);
        }
        for (int l : stitched) {
            max = Math.max(max, l);
        }
        ImagePlus result = Labels.image(imp.getShortTitle() + "-3D", out, w, h, planes, 1, max, imp.getCalibration());
        result.setProperty("cytoseg.objects", max);
        return result;
    }
}
