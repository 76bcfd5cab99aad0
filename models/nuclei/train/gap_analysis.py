"""Where does the bundled nuclei model lose matches?  Diameter and mask-parameter experiments
run through cytoseg's own pipeline (the CLI), so the numbers are the engine's.

    python models/nuclei/train/gap_analysis.py tiffs  DIR --subset val|tune
    python models/nuclei/train/gap_analysis.py segment DIR NAME [--diameter oracle|twopass|D] [cytoseg args]
    python models/nuclei/train/gap_analysis.py table  DIR NAME [NAME2]
    python models/nuclei/train/gap_analysis.py sweep  DIR NAME
    python models/nuclei/train/gap_analysis.py errors DIR NAME

Subsets (image index k in train.npz `ids` order):
  val  = k % 10 == 0: the validation split of the model card (50 images);
  tune = k % 10 == 5: 49 *training* images, the only set mask parameters may be chosen on
         (choosing them on `val` would overfit the number the card reports).

`segment` writes DIR/NAME/*_labels.tif (and flows with --save-flows) and scores them with
`cytoseg evaluate` into DIR/NAME.csv.  `--diameter oracle` passes each image's true median
diameter (cellpose.utils.diameters on the truth labels) -- an upper bound that uses the labels,
never a pipeline setting.  `--diameter twopass` is the label-free Cellpose-3-like estimate: take
the run DIR/base (model scale), measure the median diameter of its masks the same way, and where
it differs from the model's 17.1 px by more than --ratio (1.3), segment again at that diameter
(other images keep their base labels).  `table` prints per-image counts next to the true and predicted median
diameters.  `sweep` recomputes masks from saved flows (`cytoseg masks`, no network) over a grid
of cellprob_threshold / flow_threshold / min_size and prints AP@0.5 for each.  `errors` sorts
every unmatched object at IoU 0.5 into a kind (rules in `error_kinds`), per image and in total.

Set CYTOSEG (default target/release/cytoseg) and ORT_DYLIB_PATH as for the CLI.  Runs one
process at a time with one ONNX Runtime thread, to share a busy machine politely.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data  # noqa: E402
from val_tiffs import write_split  # noqa: E402

CYTOSEG = os.environ.get("CYTOSEG", str(Path(__file__).resolve().parents[3] / "target/release/cytoseg"))


def median_diameter(lbl: np.ndarray) -> float:
    """cellpose.utils.diameters(lbl)[0]: median over masks of sqrt(area) / (sqrt(pi)/2)."""
    _, counts = np.unique(lbl[lbl > 0], return_counts=True)
    if counts.size == 0:
        return 0.0
    return float(np.median(np.sqrt(counts)) / (np.pi ** 0.5 / 2))


def cmd_tiffs(a):
    out = Path(a.dir)
    rem = {"val": 0, "tune": 5}[a.subset]
    diam = {name: median_diameter(lbl) for name, lbl in write_split(out, rem).items()}
    json.dump(diam, open(out / "true_diameter.json", "w"), indent=1)
    print(f"{len(diam)} {a.subset} images written to {out}")


def evaluate(d: Path, name: str):
    csv_path = d / f"{name}.csv"
    r = subprocess.run([CYTOSEG, "evaluate", "--truth", str(d / "labels"), "--pred", str(d / name),
                        "--csv", str(csv_path), "--overwrite"], check=True, capture_output=True, text=True)
    print("\n".join(r.stdout.splitlines()[:5]))


def cmd_segment(a, extra):
    d = Path(a.dir)
    out = d / a.name
    out.mkdir(exist_ok=True)
    base = [CYTOSEG, "segment", "--out", str(out), "--threads", "1", "-q", "--overwrite", *extra]
    images = sorted((d / "images").glob("*.tif"))
    if a.diameter == "twopass":
        model_d = json.load(open(Path(__file__).resolve().parents[1] / "manifest.json"))["diameter"]
        for im in images:
            first = d / "base" / f"{im.stem}_labels.tif"
            est = median_diameter(tifffile.imread(first))
            if est > 0 and max(est / model_d, model_d / est) > a.ratio:
                subprocess.run(base + ["--diameter", str(est), str(im)], check=True)
            else:
                tifffile.imwrite(out / first.name, tifffile.imread(first))
    elif a.diameter == "oracle":
        diam = json.load(open(d / "true_diameter.json"))
        for im in images:
            subprocess.run(base + ["--diameter", str(diam[im.stem]), str(im)], check=True)
    else:
        dia = ["--diameter", a.diameter] if a.diameter else []
        subprocess.run(base + dia + [str(i) for i in images], check=True)
    evaluate(d, a.name)


def scores(d: Path, name: str, thresh="0.5"):
    return {r["image"]: r for r in csv.DictReader(open(d / f"{name}.csv")) if r["thresh"] == thresh}


def cmd_table(a):
    d = Path(a.dir)
    diam = json.load(open(d / "true_diameter.json"))
    runs = [a.name] + ([a.other] if a.other else [])
    sc = [scores(d, n) for n in runs]
    print(f"{'image':<18} {'d_true':>6} " + "  ".join(
        f"{n[:14]:>14}: {'tp':>4} {'fp':>3} {'fn':>3} {'AP':>5} {'d_pred':>6}" for n in runs))
    for s in sorted(diam, key=diam.get):
        cells = []
        for n, c in zip(runs, sc):
            p = tifffile.imread(d / n / f"{s}_labels.tif")
            r = c[s]
            cells.append(f"{'':>14}  {r['tp']:>4} {r['fp']:>3} {r['fn']:>3} {float(r['accuracy']):5.3f} "
                         f"{median_diameter(p):6.1f}")
        print(f"{s:<18} {diam[s]:6.1f} " + "  ".join(cells))
    for n, c in zip(runs, sc):
        r = c["(dataset)"]
        print(f"{n}: dataset AP@0.5 {float(r['accuracy']):.4f} tp {r['tp']} fp {r['fp']} fn {r['fn']}")


def cmd_sweep(a):
    d = Path(a.dir)
    flows = sorted((d / a.name).glob("*_flows.npy"))
    if not flows:
        sys.exit(f"no *_flows.npy in {d / a.name}: run `segment ... --save-flows` first")
    tmp = d / "_sweep"
    tmp.mkdir(exist_ok=True)
    grid = [(cp, ft, ms) for cp in a.cellprob for ft in a.flow for ms in a.min_size]
    for cp, ft, ms in grid:
        tag = f"cp{cp}_ft{ft}_ms{ms}"
        out = d / f"sweep_{tag}"
        out.mkdir(exist_ok=True)
        for f in flows:
            stem = f.name[: -len("_flows.npy")]
            fl = np.load(f)
            np.save(tmp / "dp.npy", np.ascontiguousarray(fl[:2]))
            np.save(tmp / "cp.npy", np.ascontiguousarray(fl[2]))
            subprocess.run([CYTOSEG, "masks", "--dp", str(tmp / "dp.npy"), "--cellprob", str(tmp / "cp.npy"),
                            "--out", str(out / f"{stem}_labels.tif"), "--overwrite", "-q",
                            "--cellprob-threshold", str(cp), "--flow-threshold", str(ft),
                            "--min-size", str(ms)], check=True)
        subprocess.run([CYTOSEG, "evaluate", "--truth", str(d / "labels"), "--pred", str(out),
                        "--csv", str(d / f"sweep_{tag}.csv"), "--overwrite"],
                       check=True, capture_output=True, text=True)
        for t in ("0.5", "0.75"):
            r = scores(d, f"sweep_{tag}", t)["(dataset)"]
            print(f"cellprob {cp:>5} flow {ft:>4} min_size {ms:>3}  IoU {t:<4} AP {float(r['accuracy']):.4f} "
                  f"tp {r['tp']} fp {r['fp']} fn {r['fn']}", flush=True)


def error_kinds(t: np.ndarray, p: np.ndarray):
    """Kinds of the errors at IoU 0.5 (stardist.matching's one-to-one matching).

    Unmatched truth object a (false negative), by its pixels' overlap with predictions:
      missed   - predictions cover < 20 % of it (nothing, or cellprob/flow QC dropped it);
      merged   - its main prediction is matched to another truth, or covers >= 2 truths by >= 20 %
                 of that prediction's area (touching nuclei fused);
      split    - >= 2 predictions each cover >= 20 % of it;
      shape    - one prediction, IoU < 0.5 (boundary off).
    Unmatched prediction b (false positive): `spurious` (< 20 % on any truth), `fragment` (its main
    truth is matched to another prediction), `shape` (its main truth is unmatched).
    """
    from collections import Counter

    from stardist.matching import matching
    t = t.astype(np.int64)
    p = p.astype(np.int64)
    m = matching(t, p, thresh=0.5, report_matches=True)
    pairs = [(a, b) for (a, b), sc in zip(m.matched_pairs, m.matched_scores) if sc >= 0.5]
    mt, mp = {a for a, _ in pairs}, {b for _, b in pairs}
    ov = np.zeros((t.max() + 1, p.max() + 1), np.int64)
    np.add.at(ov, (t.ravel(), p.ravel()), 1)
    psize = ov.sum(0)
    k = Counter()
    for a in range(1, ov.shape[0]):
        if a in mt or ov[a].sum() == 0:
            continue
        row = ov[a, 1:]
        if row.sum() < 0.2 * ov[a].sum():
            k["fn_missed"] += 1
            continue
        b = int(row.argmax()) + 1
        if b in mp or (ov[1:, b] >= 0.2 * psize[b]).sum() >= 2:
            k["fn_merged"] += 1
        elif (row >= 0.2 * ov[a].sum()).sum() >= 2:
            k["fn_split"] += 1
        else:
            k["fn_shape"] += 1
    for b in range(1, ov.shape[1]):
        if b in mp or psize[b] == 0:
            continue
        col = ov[1:, b]
        if col.sum() < 0.2 * psize[b]:
            k["fp_spurious"] += 1
        elif int(col.argmax()) + 1 in mt:
            k["fp_fragment"] += 1
        else:
            k["fp_shape"] += 1
    return k


def cmd_errors(a):
    from collections import Counter
    d = Path(a.dir)
    kinds = ["fn_missed", "fn_merged", "fn_split", "fn_shape", "fp_spurious", "fp_fragment", "fp_shape"]
    diam = json.load(open(d / "true_diameter.json"))
    total = Counter()
    print(f"{'image':<18} {'d_true':>6} {'n_true':>6} " + " ".join(f"{k:>11}" for k in kinds))
    for s in sorted(diam):
        t = tifffile.imread(d / "labels" / f"{s}.tif")
        k = error_kinds(t, tifffile.imread(d / a.name / f"{s}_labels.tif"))
        total += k
        print(f"{s:<18} {diam[s]:6.1f} {len(np.unique(t)) - 1:6d} " + " ".join(f"{k[x]:11d}" for x in kinds))
    print(f"{'total':<32}" + " ".join(f"{total[x]:11d}" for x in kinds))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("tiffs")
    s.add_argument("dir")
    s.add_argument("--subset", choices=["val", "tune"], required=True)
    s = sub.add_parser("segment")
    s.add_argument("dir")
    s.add_argument("name")
    s.add_argument("--diameter", default=None,
                   help="a number, twopass (label-free), or oracle (uses the truth labels)")
    s.add_argument("--ratio", type=float, default=1.3, help="twopass: rescale when off by more than this")
    s = sub.add_parser("table")
    s.add_argument("dir")
    s.add_argument("name")
    s.add_argument("other", nargs="?")
    s = sub.add_parser("errors")
    s.add_argument("dir")
    s.add_argument("name")
    s = sub.add_parser("sweep")
    s.add_argument("dir")
    s.add_argument("name")
    s.add_argument("--cellprob", type=float, nargs="+", default=[-0.5, 0.0, 0.5])
    s.add_argument("--flow", type=float, nargs="+", default=[0.4, 0.6, 0.8, 0.0])
    s.add_argument("--min-size", type=int, nargs="+", default=[15])
    a, extra = p.parse_known_args()
    if a.cmd == "segment":
        cmd_segment(a, extra)
    elif extra:
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    else:
        {"tiffs": cmd_tiffs, "table": cmd_table, "sweep": cmd_sweep, "errors": cmd_errors}[a.cmd](a)


if __name__ == "__main__":
    main()
