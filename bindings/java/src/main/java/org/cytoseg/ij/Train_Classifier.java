package org.cytoseg.ij;

import ij.IJ;
import ij.ImagePlus;
import ij.Macro;
import ij.Prefs;
import ij.WindowManager;
import ij.gui.GenericDialog;
import ij.gui.PointRoi;
import ij.gui.Roi;
import ij.measure.Calibration;
import ij.measure.ResultsTable;
import ij.plugin.PlugIn;
import java.awt.Point;
import java.io.File;
import java.util.ArrayList;
import java.util.List;
import org.cytoseg.Classifier;
import org.cytoseg.CytosegException;

/**
 * Plugins &gt; cytoseg &gt; Train Classifier: trains the per-object classifier (docs/classify.md)
 * on cells picked with ROI Manager ROIs, on an image and its label image (e.g. Segment Image's
 * output), and writes the model file: the same features, validation and file as
 * {@code cytoseg classify train}, so the model also classifies folder runs (and napari's).
 *
 * <p><b>The rule for picks.</b> Each ROI picks the object of the label image under its point
 * (every point of a point ROI) or, for an area ROI, under its centroid. Its class is its
 * group's name when the ROI is in a group (Edit &gt; Options &gt; ROI Defaults names groups;
 * an unnamed group N is {@code group N}), otherwise its name up to the first '-'
 * ({@code mitotic-3} → {@code mitotic}; a name without '-' is the class). A ROI on the
 * background is an error naming it.
 *
 * <p>Results: the cross-validated accuracy in the Log and the table {@value #TABLE} (one row
 * per true class: its labelled objects, the cross-validated predictions per class, the
 * recall). Macro: {@code run("Train Classifier", "image=cells labels=cells_labels
 * model=/data/phenotype.json trees=200 folds=5");}
 */
public class Train_Classifier implements PlugIn {
    private static final String P = "cytoseg.classifier.";
    /** Title of the results table. */
    public static final String TABLE = "cytoseg classifier";
    /** The model file proposed first. */
    static final String DEFAULT_MODEL = System.getProperty("user.home") + File.separator + "cytoseg-classifier.json";

    /** Training settings. */
    public static final class Settings {
        /** The model file to write. */
        public String model = DEFAULT_MODEL;
        /** Trees (0 = 200). */
        public int trees = 200;
        /** Cross-validation folds (0 = 5). */
        public int folds = 5;
        /** Random seed. */
        public long seed = 0;
    }

    /** One pick: the ROI it comes from, the object's label, its class. */
    static final class Pick {
        final String roi;
        final int label;
        final String cls;

        Pick(String roi, int label, String cls) {
            this.roi = roi;
            this.label = label;
            this.cls = cls;
        }
    }

    /** @return the titles of the open images (empty when none) */
    static String[] imageTitles() {
        int[] ids = WindowManager.getIDList();
        if (ids == null) {
            return new String[0];
        }
        String[] titles = new String[ids.length];
        for (int i = 0; i < ids.length; i++) {
            titles[i] = WindowManager.getImage(ids[i]).getTitle();
        }
        return titles;
    }

    /** @return the title of an open image that looks like the labels of {@code image}, else the first */
    static String guessLabels(String[] titles, ImagePlus image) {
        String base = image == null ? "" : image.getShortTitle();
        for (String t : titles) {
            if (t.startsWith(base) && t.contains("labels")) {
                return t;
            }
        }
        return titles.length > 1 ? titles[1] : titles[0];
    }

    /**
     * A dialog with the classifier commands' first fields: image, labels (open images; the
     * current one and its likely labels first) and model file; null, after an error naming
     * {@code command}, when fewer than two images are open.
     *
     * @param command the command's name
     * @return the dialog, not yet shown
     */
    static GenericDialog pairDialog(String command) {
        String[] titles = imageTitles();
        if (titles.length < 2) {
            Engine.error(command + " needs two open images: the image and its label image (Segment Image makes one).");
            return null;
        }
        ImagePlus current = WindowManager.getCurrentImage();
        GenericDialog gd = new GenericDialog("cytoseg: " + command);
        gd.addChoice("image", titles, current != null ? current.getTitle() : titles[0]);
        gd.addChoice("labels", titles, guessLabels(titles, current));
        gd.addStringField("model", Prefs.get(P + "model", DEFAULT_MODEL), 40);
        return gd;
    }

    @Override
    public void run(String arg) {
        GenericDialog gd = pairDialog("Train Classifier");
        if (gd == null) {
            return;
        }
        gd.addNumericField("trees", Prefs.get(P + "trees", 200), 0);
        gd.addNumericField("folds", Prefs.get(P + "folds", 5), 0);
        gd.addMessage("Picks: the ROI Manager's ROIs. Class: the ROI's group name, else its name up to the first '-'.");
        gd.addHelp("https://github.com/cytoseg/cytoseg/blob/main/docs/classify.md");
        gd.showDialog();
        if (gd.wasCanceled()) {
            return;
        }
        ImagePlus image = WindowManager.getImage(gd.getNextChoice());
        ImagePlus labels = WindowManager.getImage(gd.getNextChoice());
        Settings s = new Settings();
        s.model = gd.getNextString().trim();
        s.trees = (int) gd.getNextNumber();
        s.folds = (int) gd.getNextNumber();
        if (Macro.getOptions() == null) {
            Prefs.set(P + "model", s.model);
            Prefs.set(P + "trees", s.trees);
            Prefs.set(P + "folds", s.folds);
        }
        try {
            IJ.showStatus("cytoseg: training the classifier");
            Classifier.Info info = train(image, labels, Train_Model.managerRois(), s);
            IJ.log(String.format("cytoseg: classifier written to %s: %d-fold cross-validated accuracy %.3f (%d features)",
                    s.model, info.folds, info.cvAccuracy, info.features));
            table(info).show(TABLE);
            IJ.showStatus("cytoseg: classifier trained");
        } catch (CytosegException | IllegalArgumentException e) {
            Engine.error(e.getMessage());
        }
    }

    /**
     * The class of a ROI (see the class comment): its group's name, else its name up to the
     * first '-'.
     *
     * @param roi the ROI
     * @return the class name
     * @throws IllegalArgumentException for a ROI without group or name
     */
    public static String classOf(Roi roi) {
        if (roi.getGroup() > 0) {
            String g = Roi.getGroupName(roi.getGroup());
            return g != null && !g.trim().isEmpty() ? g.trim() : "group " + roi.getGroup();
        }
        String name = roi.getName();
        if (name == null || name.trim().isEmpty()) {
            throw new IllegalArgumentException("a ROI has neither a group nor a name: name it after its class"
                    + " (e.g. mitotic-1) or put it in a group");
        }
        int dash = name.indexOf('-');
        return (dash > 0 ? name.substring(0, dash) : name).trim();
    }

    /**
     * The picks of ROIs on a label image: per ROI, the object under each point (point ROIs) or
     * under the centroid (area ROIs), with the ROI's class.
     *
     * @param rois the ROIs
     * @param labels width*height labels
     * @param width width
     * @param height height
     * @return the picks, in ROI order
     * @throws IllegalArgumentException for a ROI on the background or off the image, naming it
     */
    static List<Pick> picks(Roi[] rois, int[] labels, int width, int height) {
        List<Pick> out = new ArrayList<>();
        for (int i = 0; i < rois.length; i++) {
            Roi r = rois[i];
            String cls = classOf(r);
            String name = "ROI " + (i + 1) + (r.getName() != null ? " \"" + r.getName() + "\"" : "");
            List<double[]> points = new ArrayList<>();
            if (r instanceof PointRoi) {
                for (Point p : r.getContainedPoints()) {
                    points.add(new double[] {p.x, p.y});
                }
            } else {
                points.add(r.getContourCentroid());
            }
            for (double[] p : points) {
                int x = (int) Math.floor(p[0]), y = (int) Math.floor(p[1]);
                if (x < 0 || y < 0 || x >= width || y >= height) {
                    throw new IllegalArgumentException(name + " (class " + cls + ") lies off the image at " + x + "," + y);
                }
                int label = labels[y * width + x];
                if (label == 0) {
                    throw new IllegalArgumentException(name + " (class " + cls + ") lies on the background at " + x + ","
                            + y + " of the label image: move it onto a cell (area ROIs pick the cell under their"
                            + " centroid)");
                }
                out.add(new Pick(name, label, cls));
            }
        }
        return out;
    }

    /** Checks that {@code labels} is a one-plane label image of the size of one-plane {@code image}. */
    static void checkPair(ImagePlus image, ImagePlus labels) {
        if (image == null || labels == null) {
            throw new IllegalArgumentException("choose the image and its label image");
        }
        if (image.getNSlices() * image.getNFrames() != 1 || labels.getStackSize() != 1) {
            throw new IllegalArgumentException("the classifier takes 2-D images (one z and t; channels allowed): \""
                    + image.getTitle() + "\" or \"" + labels.getTitle() + "\" has several planes");
        }
        if (image.getWidth() != labels.getWidth() || image.getHeight() != labels.getHeight()) {
            throw new IllegalArgumentException("\"" + image.getTitle() + "\" is " + image.getWidth() + "×"
                    + image.getHeight() + " but \"" + labels.getTitle() + "\" is " + labels.getWidth() + "×"
                    + labels.getHeight());
        }
    }

    /** Pixel width, height and unit of an image as the engine takes them ("pixel" when uncalibrated). */
    static Object[] calibration(ImagePlus image) {
        Calibration cal = image.getCalibration();
        boolean scaled = Segment_Image.isCalibrated(cal);
        return new Object[] {
            scaled ? cal.pixelWidth : 1.0, scaled ? cal.pixelHeight : 1.0, scaled ? cal.getUnit() : "pixel"
        };
    }

    /**
     * Trains on the objects the ROIs pick and writes the model file.
     *
     * @param image the image (8/16/32-bit or RGB; all channels are used)
     * @param labels its label image
     * @param rois the picks (see the class comment)
     * @param s settings
     * @return the model's description
     * @throws IllegalArgumentException for unusable images or ROIs
     * @throws CytosegException for engine errors (one class only, ...)
     */
    public static Classifier.Info train(ImagePlus image, ImagePlus labels, Roi[] rois, Settings s) {
        checkPair(image, labels);
        if (s.model == null || s.model.isEmpty()) {
            throw new IllegalArgumentException("model: name the model file to write");
        }
        if (rois.length == 0) {
            throw new IllegalArgumentException("the ROI Manager is empty: add a ROI on each picked cell"
                    + " (name mitotic-1, mitotic-2, ... or put them in groups)");
        }
        int w = image.getWidth(), h = image.getHeight();
        int[] lab = Labels.toInts(labels.getProcessor(), "\"" + labels.getTitle() + "\"");
        List<Pick> picks = picks(rois, lab, w, h);
        int[] pl = new int[picks.size()];
        String[] pc = new String[picks.size()];
        for (int i = 0; i < pl.length; i++) {
            pl[i] = picks.get(i).label;
            pc[i] = picks.get(i).cls;
        }
        int[] nc = new int[1];
        Object px = Segment_Image.planePixels(image, 0, 1, 1, nc);
        Object[] cal = calibration(image);
        return Classifier.train(px, nc[0], lab, w, h, pl, pc, image.getTitle(), (Double) cal[0], (Double) cal[1],
                (String) cal[2], s.trees, s.seed, s.folds, s.model);
    }

    /**
     * The table of a trained model: one row per true class, its labelled objects, the
     * cross-validated predictions per class and the recall; the accuracy in every row.
     *
     * @param info the model's description
     * @return the table (not shown)
     */
    public static ResultsTable table(Classifier.Info info) {
        ResultsTable rt = new ResultsTable();
        for (int i = 0; i < info.classes.size(); i++) {
            rt.incrementCounter();
            rt.addValue("class", info.classes.get(i));
            rt.addValue("objects", info.objectsPerClass[i]);
            long right = 0, all = 0;
            for (int j = 0; j < info.classes.size(); j++) {
                rt.addValue("predicted " + info.classes.get(j), info.confusion[i][j]);
                all += info.confusion[i][j];
                right += i == j ? info.confusion[i][j] : 0;
            }
            rt.addValue("recall", all > 0 ? (double) right / all : Double.NaN);
            rt.addValue("cv_accuracy", info.cvAccuracy);
        }
        rt.setPrecision(4);
        return rt;
    }
}
