"""Label-map cases and reference outputs for the metric parity fixtures.

Cases are real DSB2018 label crops with systematically perturbed predictions, plus hand-made
cases (exact-threshold IoUs, exact ties, empty images, no background, nested outlines, big and
non-contiguous ids). Reference outputs come from stardist.matching 0.9.2 and cellpose.metrics
4.2.1.1; every prediction is stored as an actual array.
"""
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import expand_labels

TRAIN_NPZ = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "dsb2018-fluo" / "train.npz"
THRESHOLDS = [0.0, 0.1, 0.3, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
CRITERIA = ["iou", "iot", "iop"]
STATS_FIELDS = [
    "fp", "tp", "fn", "precision", "recall", "accuracy", "f1", "n_true", "n_pred",
    "mean_true_score", "mean_matched_score", "panoptic_quality",
]
REAL_SCALES = [0.5, 1.0]


# ---------------------------------------------------------------- perturbations
def _erode(y, k):
    y = y.copy()
    for _ in range(k):
        p = np.pad(y, 1, mode="edge")
        same = (p[:-2, 1:-1] == y) & (p[2:, 1:-1] == y) & (p[1:-1, :-2] == y) & (p[1:-1, 2:] == y)
        y = np.where(same, y, 0).astype(y.dtype)
    return y


def _shift(y, dy, dx):
    out = np.zeros_like(y)
    h, w = y.shape
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = y[ys, xs]
    return out


def _labels(y):
    u = np.unique(y)
    return u[u != 0]


def _drop(y, rng, frac):
    lab = _labels(y)
    if len(lab) == 0:
        return y.copy()
    gone = rng.choice(lab, size=max(1, int(frac * len(lab))), replace=False)
    return np.where(np.isin(y, gone), 0, y).astype(y.dtype)


def _spurious(y, rng, n):
    y = y.copy()
    h, w = y.shape
    nxt = int(y.max()) + 1
    yy, xx = np.mgrid[:h, :w]
    for _ in range(n):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(2, 8)
        disk = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) & (y == 0)
        if disk.any():
            y[disk] = nxt
            nxt += 1
    return y


def _merge(y, rng, frac):
    lab = _labels(y)
    if len(lab) < 2:
        return y.copy()
    com = np.array(ndi.center_of_mass(np.ones_like(y), y, lab))
    out = y.copy()
    for a in rng.choice(len(lab), size=max(1, int(frac * len(lab))), replace=False):
        d = ((com - com[a]) ** 2).sum(1)
        d[a] = np.inf
        b = int(np.argmin(d))
        out[y == lab[a]] = lab[b]
    return out


def _split(y, rng, frac):
    lab = _labels(y)
    out = y.copy()
    if len(lab) == 0:
        return out
    nxt = int(y.max()) + 1
    for l in rng.choice(lab, size=max(1, int(frac * len(lab))), replace=False):
        yy, xx = np.nonzero(y == l)
        if rng.random() < 0.5:
            side = xx < xx.mean()
        else:
            side = yy < yy.mean()
        out[yy[side], xx[side]] = nxt
        nxt += 1
    return out


def _jitter(y, rng):
    out = y.copy()
    p = np.pad(y, 1, mode="edge")
    nb = [p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]]
    border = np.zeros(y.shape, bool)
    for q in nb:
        border |= q != y
    pick = border & (rng.random(y.shape) < 0.35)
    src = rng.integers(0, 4, y.shape)
    choice = np.choose(src, nb)
    out[pick] = choice[pick]
    return out


def _relabel(y, rng, lo, hi):
    """Random (order-scrambling) relabelling to distinct ids in [lo, hi)."""
    lab = _labels(y)
    ids = rng.choice(np.arange(lo, hi, dtype=np.int64), size=len(lab), replace=False)
    lut = dict(zip(lab.tolist(), ids.tolist()))
    out = np.zeros(y.shape, np.uint32)
    for a, b in lut.items():
        out[y == a] = b
    return out


def real_variants(y, rng):
    """(name, pred, with_cellpose) for one real ground-truth crop."""
    full = expand_labels(y, distance=10**6) if y.max() > 0 else y
    v = [
        ("identity", y.copy(), True),
        ("eroded", _erode(y, 1 + int(rng.integers(0, 2))), True),
        ("dilated", expand_labels(y, distance=2), True),
        ("shifted", _shift(y, 2, 3), True),
        ("shifted_far", _shift(y, -5, 6), True),
        ("merged", _merge(y, rng, 0.25), True),
        ("split", _split(y, rng, 0.3), True),
        ("dropped", _drop(y, rng, 0.3), True),
        ("spurious", _spurious(y, rng, 8), True),
        ("jitter", _jitter(y, rng), True),
        ("noncontig", _relabel(_erode(y, 1), rng, 1, 5000), True),
        ("bigids", _relabel(_shift(y, 1, 0), rng, 1 << 23, (1 << 24) + 1000), False),
        ("messy", _relabel(_spurious(_drop(_erode(_shift(y, 1, -2), 1), rng, 0.15), rng, 5), rng, 1, 3000), True),
        ("no_background", full.astype(np.uint32), True),
        ("empty", np.zeros_like(y), True),
    ]
    return [(n, p.astype(np.uint32), cp) for n, p, cp in v]


# ---------------------------------------------------------------- real data
def real_crops(n, seed, max_side, min_objects=15):
    """n crops (at most max_side square) of distinct random training images, preferring crops
    with at least min_objects nuclei."""
    d = np.load(TRAIN_NPZ)
    ids = d["ids"]
    rng = np.random.default_rng(seed)
    out, spare = [], []
    for k in rng.permutation(len(ids)):
        if len(out) == n:
            break
        lbl = d[f"lbl_{k}"]
        h, w = lbl.shape
        best = None
        for _ in range(12):
            y0 = int(rng.integers(0, max(1, h - max_side + 1)))
            x0 = int(rng.integers(0, max(1, w - max_side + 1)))
            c = lbl[y0:y0 + max_side, x0:x0 + max_side]
            score = len(np.unique(c))
            if best is None or score > best[0]:
                best = (score, c, y0, x0)
        score, c, y0, x0 = best
        item = (f"dsb_{str(ids[k])[:8]}_{y0}_{x0}", c.astype(np.uint32))
        (out if score - 1 >= min_objects else spare).append(item)
    return (out + spare)[:n]


# ---------------------------------------------------------------- hand cases
def _bar_case():
    """One object per threshold with an IoU (and IoT) of exactly that threshold, k/20."""
    y = np.zeros((2 * 3 * 14, 30), np.uint32)
    p = np.zeros_like(y)
    lab = 1
    for row, m in enumerate([2, 6, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 7]):
        r0 = row * 6
        y[r0:r0 + 2, 0:10] = lab
        # pred: first m of the 20 pixels
        flat = np.zeros(20, bool)
        flat[:m] = True
        p[r0:r0 + 2, 0:10][flat.reshape(2, 10)] = 100 + lab
        lab += 1
    return y, p


def _overshoot_case():
    y = np.zeros((40, 40), np.uint32)
    p = np.zeros_like(y)
    # IoU = 20/(20+5) = 0.8, 20/(20+20) = 0.5, 20/(20+80/7..) ; IoP exactly 0.7: pred 20 px, 14 inside
    y[0:2, 0:10] = 3
    p[0:2, 0:10] = 9
    p[2, 0:5] = 9
    y[5:7, 0:10] = 4
    p[5:9, 0:10] = 11
    y[12:14, 0:10] = 6
    p[12:14, 3:13] = 12  # overlap 14 of pred 20 -> IoP 0.7, IoT 0.7, IoU 14/26
    y[20:30, 20:30] = 8
    p[21:31, 20:30] = 13  # overlap 90 / union 110
    return y, p


def _tie_cases():
    # 2x2 symmetric ties: trues are left/right halves, preds top/bottom halves.
    y = np.zeros((20, 44), np.uint32)
    p = np.zeros_like(y)
    y[0:8, 0:4] = 5
    y[0:8, 4:8] = 6
    p[0:4, 0:8] = 2
    p[4:8, 0:8] = 7
    # 3x3 block tie grid
    for i in range(3):
        y[10:19, 10 + 3 * i:13 + 3 * i] = 10 + i
        p[10 + 3 * i:13 + 3 * i, 10:19] = 20 + i
    # a pred that ties between two trues, one true that ties between two preds
    y[0:4, 20:24] = 30
    y[0:4, 24:28] = 31
    p[0:4, 22:26] = 40
    p[10:14, 30:34] = 41
    p[14:18, 30:34] = 42
    y[12:16, 30:34] = 32
    return y, p


def _nested_case():
    y = np.zeros((30, 30), np.uint32)
    y[2:15, 2:15] = 1
    y[5:12, 5:12] = 0
    y[7:10, 7:10] = 1  # island of the same label in the hole
    y[20:28, 3:9] = 2
    y[22:26, 5:7] = 3  # a different label inside
    y[18:29, 15:29] = 4
    y[20:27, 17:27] = 0
    y[23, 22] = 4
    y[0, 29] = 5
    y[29, 0] = 6
    y[29, 29] = 7
    y[0:1, 0:2] = 8
    p = expand_labels(y, 1).astype(np.uint32)
    p[23, 22] = 0
    return y, p


def _single_pixel_case(rng):
    y = np.zeros((48, 48), np.uint32)
    m = rng.random((24, 24)) < 0.8
    ids = np.arange(1, m.sum() + 1, dtype=np.uint32)
    y[:24, :24][m] = ids
    y[30:40, 30:40] = ids.max() + 1
    p = _shift(y, 1, 0)
    p[:24, :24][rng.random((24, 24)) < 0.3] = 0
    return y, p


# Real crops that once exposed a difference (image id prefix, y0, x0, side, variants kept).
REGRESSION_CROPS = [
    # Exactly tied optimal assignments (IoT) whose float32 score sums differ.
    ("c04fa1a7", 26, 4, 224, ("shifted_far",)),
]


def regression_cases(rng):
    d = np.load(TRAIN_NPZ)
    ids = [str(i) for i in d["ids"]]
    out = []
    for prefix, y0, x0, side, keep in REGRESSION_CROPS:
        k = next(i for i, name in enumerate(ids) if name.startswith(prefix))
        y = d[f"lbl_{k}"][y0:y0 + side, x0:x0 + side].astype(np.uint32)
        variants = [v for v in real_variants(y, rng) if v[0] in keep]
        out.append((f"regression_{prefix}_{y0}_{x0}", y, variants, [1.0]))
    return out


def hand_cases(rng, crops):
    """(group name, y_true, [(variant, pred, with_cellpose)], boundary scales)."""
    out = regression_cases(rng)
    y, p = _bar_case()
    out.append(("exact_iou", y, [("bars", p, True), ("self", y.copy(), True)], [1.0]))
    out.append(("exact_iou_swapped", p.copy(), [("bars", y.copy(), True)], [1.0]))
    y, p = _overshoot_case()
    out.append(("overshoot", y, [("pred", p, True), ("shifted", _shift(p, 0, 1), True)], [1.0, 3.0]))
    y, p = _tie_cases()
    out.append(("ties", y, [("ties", p, True), ("ties_t", y.copy(), True), ("ties_rev", p[::-1, ::-1].copy(), True)], [1.0]))
    out.append(("ties_swapped", p.copy(), [("ties", y.copy(), True)], [1.0]))
    y, p = _nested_case()
    out.append(("nested", y, [("expanded", p, True), ("self", y.copy(), True)], [1.0, 0.3]))
    y, p = _single_pixel_case(rng)
    out.append(("single_pixels", y, [("shifted", p, True), ("self", y.copy(), True)], [1.0, 10.0, 14.0]))
    name, c = crops[0]
    z = np.zeros_like(c)
    out.append(("empty_truth", z, [("real", c.copy(), True), ("empty", z.copy(), True)], [1.0]))
    full = expand_labels(c, distance=10**6).astype(np.uint32)
    out.append(("no_background_truth", full, [
        ("self", full.copy(), True),
        ("eroded", _erode(full, 1), True),
        ("shifted", _shift(full, 3, -2), True),
        ("real", c.copy(), True),
    ], [0.5, 1.0]))
    big = _relabel(c, rng, 1 << 23, (1 << 24) + 5000)
    out.append(("big_true_ids", big, [
        ("shifted", _relabel(_shift(c, 2, 1), rng, 1, 1 << 24), False),
        ("self", big.copy(), False),
    ], [1.0]))
    nc = _relabel(c, rng, 1, 900)
    out.append(("noncontig_truth", nc, [
        ("eroded", _relabel(_erode(c, 1), rng, 1, 400), True),
        ("split", _split(nc, rng, 0.4), True),
    ], [1.0]))
    return out


# ---------------------------------------------------------------- references
def reference(y_true, y_pred, thresholds, scales, with_cellpose):
    """Reference outputs as a dict of arrays (keys without the variant prefix)."""
    from stardist.matching import matching

    t = len(thresholds)
    stats, pairs_all, scores_all, ok_all = [], [], [], []
    for c in CRITERIA:
        res = matching(y_true, y_pred, thresh=list(thresholds), criterion=c, report_matches=True)
        stats.append([[float(getattr(r, f)) for f in STATS_FIELDS] for r in res])
        m = len(res[0].matched_pairs)
        pairs = np.zeros((t, m, 2), np.uint32)
        scores = np.zeros((t, m), np.float32)
        ok = np.zeros((t, m), np.uint8)
        for k, r in enumerate(res):
            assert len(r.matched_pairs) == m
            if m:
                pairs[k] = np.array(r.matched_pairs, np.uint64)
                scores[k] = np.array(r.matched_scores, np.float32)
                ok[k, list(r.matched_tps)] = 1
        pairs_all.append(pairs)
        scores_all.append(scores)
        ok_all.append(ok)
    out = {
        # [criterion, threshold, field]
        "sd_stats": np.array(stats, np.float64),
        # [criterion, threshold, pair, (true, pred)]
        "sd_pairs": np.stack(pairs_all),
        "sd_scores": np.stack(scores_all),
        "sd_ok": np.stack(ok_all),
    }
    if with_cellpose:
        import warnings

        from cellpose import metrics

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ap, tp, fp, fn = metrics.average_precision(y_true, y_pred, threshold=list(thresholds))
            iout, preds = metrics.mask_ious(y_true, y_pred)
            aji = metrics.aggregated_jaccard_index([y_true], [y_pred])
            bp, br, bf = metrics.boundary_scores([y_true], [y_pred], list(scales))
        # rows: ap, tp, fp, fn (float32, per threshold)
        out["cp_ap"] = np.stack([np.asarray(a, np.float32) for a in (ap, tp, fp, fn)])
        out["cp_iout"] = np.asarray(iout, np.float64)
        out["cp_preds"] = np.asarray(preds, np.int64)
        # aji, then boundary precision, recall, fscore per scale
        out["cp_scores"] = np.concatenate([
            np.asarray(aji, np.float64).reshape(1),
            np.asarray(bp, np.float64)[:, 0],
            np.asarray(br, np.float64)[:, 0],
            np.asarray(bf, np.float64)[:, 0],
        ])
    return out


def dataset_reference(ys_true, ys_pred, thresholds):
    from stardist.matching import matching_dataset

    # [criterion, by_image, threshold, field]
    out = np.zeros((len(CRITERIA), 2, len(thresholds), len(STATS_FIELDS)), np.float64)
    for i, c in enumerate(CRITERIA):
        for b in (0, 1):
            res = matching_dataset(ys_true, ys_pred, thresh=list(thresholds), criterion=c,
                                   by_image=bool(b), show_progress=False)
            out[i, b] = [[float(getattr(r, f)) for f in STATS_FIELDS] for r in res]
    return {"ds_stats": out}
