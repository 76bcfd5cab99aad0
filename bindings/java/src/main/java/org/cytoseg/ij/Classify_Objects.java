package org.cytoseg.ij;

import ij.IJ;
import ij.ImagePlus;
import ij.Macro;
import ij.Prefs;
import ij.WindowManager;
import ij.gui.GenericDialog;
import ij.gui.Overlay;
import ij.gui.Roi;
import ij.measure.ResultsTable;
import ij.plugin.PlugIn;
import java.awt.Color;
import org.cytoseg.Classifier;
import org.cytoseg.CytosegException;

/**
 * Plugins &gt; cytoseg &gt; Classify Objects: classifies every object of a label image with a
 * classifier model file (Train Classifier's, {@code cytoseg classify train}'s or napari's):
 * the table {@value #TABLE} (label, class, probability) and, on the image, an overlay of the
 * objects' outlines coloured by class (named {@code <label>-<class>}). The classes are those
 * {@code cytoseg classify apply} gives the same image and labels. Macro:
 * {@code run("Classify Objects", "image=cells labels=cells_labels model=/data/phenotype.json");}
 */
public class Classify_Objects implements PlugIn {
    private static final String P = "cytoseg.classifier.";
    /** Title of the results table. */
    public static final String TABLE = "cytoseg classes";
    /** Outline colour of each class index (cycled); unclassified objects are grey. */
    static final Color[] COLORS = {
        Color.GREEN, Color.MAGENTA, Color.CYAN, Color.ORANGE, Color.YELLOW, Color.RED, Color.BLUE, Color.PINK
    };

    @Override
    public void run(String arg) {
        GenericDialog gd = Train_Classifier.pairDialog("Classify Objects");
        if (gd == null) {
            return;
        }
        gd.addHelp("https://github.com/cytoseg/cytoseg/blob/main/docs/classify.md");
        gd.showDialog();
        if (gd.wasCanceled()) {
            return;
        }
        ImagePlus image = WindowManager.getImage(gd.getNextChoice());
        ImagePlus labels = WindowManager.getImage(gd.getNextChoice());
        String model = gd.getNextString().trim();
        if (Macro.getOptions() == null) {
            Prefs.set(P + "model", model);
        }
        try {
            IJ.showStatus("cytoseg: classifying objects");
            Classifier.Result r = classify(image, labels, model);
            table(r).show(TABLE);
            image.setOverlay(overlay(labels, r));
            IJ.showStatus("cytoseg: " + r.labels.length + " objects classified");
        } catch (CytosegException | IllegalArgumentException e) {
            Engine.error(e.getMessage());
        }
    }

    /**
     * Classifies the objects of {@code labels} on {@code image}.
     *
     * @param image the image (all channels, its calibration: as in training)
     * @param labels its label image
     * @param model the model file
     * @return the class of every object
     * @throws CytosegException for engine errors (a feature the image lacks, a bad model file)
     */
    public static Classifier.Result classify(ImagePlus image, ImagePlus labels, String model) {
        Train_Classifier.checkPair(image, labels);
        if (model == null || model.isEmpty()) {
            throw new IllegalArgumentException("model: choose a classifier model file");
        }
        int w = image.getWidth(), h = image.getHeight();
        int[] lab = Labels.toInts(labels.getProcessor(), "\"" + labels.getTitle() + "\"");
        int[] nc = new int[1];
        Object px = Segment_Image.planePixels(image, 0, 1, 1, nc);
        Object[] cal = Train_Classifier.calibration(image);
        return Classifier.classify(model, px, nc[0], lab, w, h, (Double) cal[0], (Double) cal[1], (String) cal[2]);
    }

    /**
     * @param r a classification
     * @return one row per object: label, class ("" when unclassified), probability (not shown)
     */
    public static ResultsTable table(Classifier.Result r) {
        ResultsTable rt = new ResultsTable();
        for (int i = 0; i < r.labels.length; i++) {
            rt.incrementCounter();
            rt.addValue("label", r.labels[i]);
            rt.addValue("class", r.className(i));
            rt.addValue("probability", r.probability[i]);
        }
        rt.setPrecision(4);
        return rt;
    }

    /**
     * The objects' outlines coloured by class, each named {@code <label>-<class>}.
     *
     * @param labels the label image
     * @param r its classification
     * @return the overlay
     */
    public static Overlay overlay(ImagePlus labels, Classifier.Result r) {
        int w = labels.getWidth(), h = labels.getHeight();
        int[] lab = Labels.toInts(labels.getProcessor(), "labels");
        int max = 0;
        for (int l : r.labels) max = Math.max(max, l);
        Roi[] rois = Labels.rois(lab, w, h, max);
        Overlay o = new Overlay();
        for (int i = 0; i < r.labels.length; i++) {
            Roi roi = rois[r.labels[i]];
            if (roi == null) {
                continue;
            }
            int c = r.classIndex[i];
            roi.setStrokeColor(c < 0 ? Color.GRAY : COLORS[c % COLORS.length]);
            roi.setName(r.labels[i] + "-" + r.className(i));
            o.add(roi);
        }
        return o;
    }
}
