"""Reference side of benches/bench_metrics.rs.

    python benches/metrics_reference.py INPUT.npz OUTPUT.npz REPEATS

INPUT.npz holds `n` (1 value), `thresholds` (float64) and `true_<k>`, `pred_<k>` label maps
(uint32). Times stardist.matching.matching_dataset (criterion iou, by_image False; single
process, as stardist runs it by default) and cellpose.metrics.average_precision on the same
input, after one warm-up call (numba compilation), and writes the median inputs for the
comparison: `stats` [threshold, field], `stats_by_image`, `ap` [image, threshold] (float32),
`times_matching`, `times_ap` (seconds per repeat).
"""
import sys
import time
import warnings

import numpy as np

FIELDS = [
    "fp", "tp", "fn", "precision", "recall", "accuracy", "f1", "n_true", "n_pred",
    "mean_true_score", "mean_matched_score", "panoptic_quality",
]


def main():
    inp, outp, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
    from cellpose import metrics
    from stardist.matching import matching, matching_dataset

    d = np.load(inp)
    n = int(d["n"][0])
    thr = [float(t) for t in d["thresholds"]]
    ys_t = [d[f"true_{k}"] for k in range(n)]
    ys_p = [d[f"pred_{k}"] for k in range(n)]
    matching(ys_t[0], ys_p[0], thresh=thr)  # numba warm-up

    def run_matching(by_image):
        return matching_dataset(ys_t, ys_p, thresh=thr, criterion="iou", by_image=by_image,
                                show_progress=False)

    times_matching = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = run_matching(False)
        times_matching.append(time.perf_counter() - t0)
    res_b = run_matching(True)

    times_ap = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(repeats):
            t0 = time.perf_counter()
            ap = metrics.average_precision(ys_t, ys_p, threshold=thr)[0]
            times_ap.append(time.perf_counter() - t0)

    np.savez(
        outp,
        stats=np.array([[float(getattr(r, f)) for f in FIELDS] for r in res], np.float64),
        stats_by_image=np.array([[float(getattr(r, f)) for f in FIELDS] for r in res_b], np.float64),
        ap=np.asarray(ap, np.float32),
        times_matching=np.array(times_matching, np.float64),
        times_ap=np.array(times_ap, np.float64),
    )


if __name__ == "__main__":
    main()
