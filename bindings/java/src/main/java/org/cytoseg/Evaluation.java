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
        // The values come in the engine's field order; read them by name, never by position.
        String[] names = Native.matchingFields().split("\n");
        java.util.Map<String, Integer> at = new java.util.HashMap<>();
        for (int k = 0; k < names.length; k++) {
            at.put(names[k], k);
        }
        Stats[] s = new Stats[thresholds.length];
        for (int i = 0; i < s.length; i++) {
            final int o = i * names.length;
            java.util.function.ToDoubleFunction<String> f = name -> {
                Integer k = at.get(name);
                if (k == null) {
                    throw new IllegalStateException("the engine has no matching field " + name);
                }
                return v[o + k];
            };
            Stats t = new Stats();
            t.thresh = f.applyAsDouble("thresh");
            t.tp = (long) f.applyAsDouble("tp");
            t.fp = (long) f.applyAsDouble("fp");
            t.fn = (long) f.applyAsDouble("fn");
            t.nTrue = (long) f.applyAsDouble("n_true");
            t.nPred = (long) f.applyAsDouble("n_pred");
            t.precision = f.applyAsDouble("precision");
            t.recall = f.applyAsDouble("recall");
            t.ap = f.applyAsDouble("accuracy");
            t.f1 = f.applyAsDouble("f1");
            t.meanTrueScore = f.applyAsDouble("mean_true_score");
            t.meanMatchedScore = f.applyAsDouble("mean_matched_score");
            t.panopticQuality = f.applyAsDouble("panoptic_quality");
            s[i] = t;
        }
        return new Evaluation(s, v[v.length - 1]);
    }
}
