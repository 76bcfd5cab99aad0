package org.cytoseg.ij;

import ij.IJ;
import ij.ImagePlus;
import ij.Macro;
import ij.Prefs;
import ij.WindowManager;
import ij.gui.GenericDialog;
import ij.measure.ResultsTable;
import ij.plugin.PlugIn;
import org.cytoseg.CytosegException;
import org.cytoseg.Evaluation;

/**
 * Plugins &gt; cytoseg &gt; Evaluate Labels: scores a predicted label image against a
 * ground-truth one (stardist.matching 0.9.2: AP, precision, recall, F1, panoptic quality at each
 * threshold) into the table "cytoseg evaluation". Stacks are scored as one volume (3-D
 * objects). Macro: {@code run("Evaluate Labels", "truth=gt.tif prediction=pred.tif
 * thresholds=0.5,0.75,0.9 criterion=iou");}
 */
public class Evaluate_Labels implements PlugIn {
    private static final String P = "cytoseg.evaluate.";
    /** Title of the output table. */
    public static final String TABLE = "cytoseg evaluation";

    @Override
    public void run(String arg) {
        int[] ids = WindowManager.getIDList();
        if (ids == null || ids.length < 1) {
            Engine.error("Evaluate Labels needs two open label images (ground truth and prediction).");
            return;
        }
        String[] titles = new String[ids.length];
        for (int i = 0; i < ids.length; i++) {
            titles[i] = WindowManager.getImage(ids[i]).getTitle();
        }
        GenericDialog gd = new GenericDialog("cytoseg: Evaluate Labels");
        gd.addChoice("truth", titles, titles[0]);
        gd.addChoice("prediction", titles, titles[titles.length > 1 ? 1 : 0]);
        gd.addStringField("thresholds", Prefs.get(P + "thresholds", "0.5,0.75,0.9"), 20);
        gd.addChoice("criterion", new String[] {"iou", "iot", "iop"}, Prefs.get(P + "criterion", "iou"));
        gd.showDialog();
        if (gd.wasCanceled()) {
            return;
        }
        ImagePlus truth = WindowManager.getImage(gd.getNextChoice());
        ImagePlus pred = WindowManager.getImage(gd.getNextChoice());
        String thresholds = gd.getNextString();
        String criterion = gd.getNextChoice();
        if (Macro.getOptions() == null) {
            Prefs.set(P + "thresholds", thresholds);
            Prefs.set(P + "criterion", criterion);
        }
        try {
            ResultsTable rt = evaluate(truth, pred, parseThresholds(thresholds), criterion);
            rt.show(TABLE);
        } catch (CytosegException | IllegalArgumentException e) {
            Engine.error(e.getMessage());
        }
    }

    /**
     * @param text comma- or space-separated numbers (the engine checks that they lie in [0, 1])
     * @return the thresholds
     */
    public static double[] parseThresholds(String text) {
        String[] parts = text.trim().split("[,\\s]+");
        double[] out = new double[parts.length];
        for (int i = 0; i < parts.length; i++) {
            try {
                out[i] = Double.parseDouble(parts[i]);
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("thresholds: \"" + parts[i] + "\" is not a number (e.g. 0.5,0.75,0.9)");
            }
        }
        return out;
    }

    /** All planes of a label image as one int array. */
    static int[] volume(ImagePlus imp, String what) {
        int n = imp.getWidth() * imp.getHeight();
        int planes = imp.getStackSize();
        int[] out = new int[n * planes];
        for (int p = 1; p <= planes; p++) {
            System.arraycopy(Labels.toInts(imp.getStack().getProcessor(p), what), 0, out, (p - 1) * n, n);
        }
        return out;
    }

    /**
     * Scores {@code pred} against {@code truth}.
     *
     * @param truth ground truth labels
     * @param pred predicted labels
     * @param thresholds thresholds
     * @param criterion iou, iot or iop
     * @return the table (not shown): one row per threshold
     */
    public static ResultsTable evaluate(ImagePlus truth, ImagePlus pred, double[] thresholds, String criterion) {
        if (truth == null || pred == null) {
            throw new IllegalArgumentException("choose two open images");
        }
        if (truth.getWidth() != pred.getWidth() || truth.getHeight() != pred.getHeight()
                || truth.getStackSize() != pred.getStackSize()) {
            throw new IllegalArgumentException("\"" + truth.getTitle() + "\" is " + truth.getWidth() + "×"
                    + truth.getHeight() + "×" + truth.getStackSize() + " but \"" + pred.getTitle() + "\" is "
                    + pred.getWidth() + "×" + pred.getHeight() + "×" + pred.getStackSize());
        }
        int[] t = volume(truth, "\"" + truth.getTitle() + "\"");
        int[] p = volume(pred, "\"" + pred.getTitle() + "\"");
        Evaluation e = Evaluation.evaluate(t, p, thresholds, criterion);
        ResultsTable rt = new ResultsTable();
        for (Evaluation.Stats s : e.stats) {
            rt.incrementCounter();
            rt.addValue("thresh", s.thresh);
            rt.addValue("criterion", criterion);
            rt.addValue("n_true", s.nTrue);
            rt.addValue("n_pred", s.nPred);
            rt.addValue("tp", s.tp);
            rt.addValue("fp", s.fp);
            rt.addValue("fn", s.fn);
            rt.addValue("AP", s.ap);
            rt.addValue("precision", s.precision);
            rt.addValue("recall", s.recall);
            rt.addValue("F1", s.f1);
            rt.addValue("PQ", s.panopticQuality);
            rt.addValue("mean_true_score", s.meanTrueScore);
            rt.addValue("mean_matched_score", s.meanMatchedScore);
            rt.addValue("dice", e.dice);
        }
        rt.setPrecision(4);
        return rt;
    }
}
