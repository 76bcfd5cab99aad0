package org.cytoseg;

/**
 * Matching statistics of a predicted label image against ground truth, exactly as
 * {@code stardist.matching.matching} 0.9.2 computes them (the engine's {@code cytoseg evaluate}).
 */
public final class Evaluation {
    /** Statistics at one threshold. */
    public static final class Stats {
        /** Threshold. */
        public double thresh;
        /** True positives, false positives, false negatives, true and predicted objects. */
        public long tp, fp, fn, nTrue, nPred;
        /** tp/(tp+fp), tp/(tp+fn), tp/(tp+fp+fn) (the DSB 2018 AP), F1. */
        public double precision, recall, ap, f1;
        /** Mean true score, mean matched score, panoptic quality. */
        public double meanTrueScore, meanMatchedScore, panopticQuality;
    }

    /** Per threshold, in the order given. */
    public final Stats[] stats;
    /** Pixel-level foreground Dice (NaN when both images are empty). */
    public final double dice;

    private Evaluation(Stats[] stats, double dice) {
        this.stats = stats;
        this.dice = dice;
    }

    /**
     * @param truth ground-truth labels (0 = background)
     * @param pred predicted labels, same length
     * @param thresholds in [0, 1]
     * @param criterion iou, iot or iop
     * @return the statistics
     */
    public static Evaluation evaluate(int[] truth, int[] pred, double[] thresholds, String criterion) {
        double[] v = Native.evaluate(truth, pred, thresholds, criterion);
        Stats[] s = new Stats[thresholds.length];
        for (int i = 0; i < s.length; i++) {
            int o = i * 13;
            Stats t = new Stats();
            t.thresh = v[o];
            t.tp = (long) v[o + 1];
            t.fp = (long) v[o + 2];
            t.fn = (long) v[o + 3];
            t.nTrue = (long) v[o + 4];
            t.nPred = (long) v[o + 5];
            t.precision = v[o + 6];
            t.recall = v[o + 7];
            t.ap = v[o + 8];
            t.f1 = v[o + 9];
            t.meanTrueScore = v[o + 10];
            t.meanMatchedScore = v[o + 11];
            t.panopticQuality = v[o + 12];
            s[i] = t;
        }
        return new Evaluation(s, v[v.length - 1]);
    }
}
