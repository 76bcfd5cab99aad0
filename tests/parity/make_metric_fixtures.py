"""Writes the metric parity fixtures (default: tests/fixtures/metrics/, seed 2026).

Needs stardist==0.9.2 (stardist.matching only, no TensorFlow), cellpose==4.2.1.1, scipy,
scikit-image (all in tests/parity/requirements.txt) and ../shared/data/dsb2018-fluo/train.npz:

    python tests/parity/make_metric_fixtures.py [--seed 2026] [--n-real 12] [--max-side 160] [--out DIR]

Layout of DIR:
  manifest.json   groups (file, variants, boundary scales) and the dataset member order
  g<NN>_<name>.npz one ground truth `y_true` with its variants: `<variant>__pred` (the actual
                  predicted label map) and its reference outputs `<variant>__<key>` (see
                  metric_cases.reference); `thresholds` and `scales` per group
  dataset.npz     stardist matching_dataset over every (truth, pred) of the manifest, in order
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import metric_cases as mc  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--n-real", type=int, default=12)
    ap.add_argument("--max-side", type=int, default=160)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "fixtures" / "metrics")
    args = ap.parse_args()

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    for old in list(out.glob("*.npz")) + list(out.glob("manifest.json")):
        old.unlink()

    rng = np.random.default_rng(args.seed)
    crops = mc.real_crops(args.n_real, args.seed, args.max_side)
    groups = []
    for name, y in crops:
        groups.append((name, y, mc.real_variants(y, rng), mc.REAL_SCALES))
    groups.extend(mc.hand_cases(rng, crops))

    thresholds = np.array(mc.THRESHOLDS, np.float64)
    manifest = {
        "seed": args.seed,
        "thresholds": mc.THRESHOLDS,
        "criteria": mc.CRITERIA,
        "stats_fields": mc.STATS_FIELDS,
        "groups": [],
        "dataset": {"file": "dataset.npz", "members": []},
    }
    ds_true, ds_pred = [], []
    for gi, (name, y, variants, scales) in enumerate(groups):
        fname = f"g{gi:02d}_{name}.npz"
        arrays = {
            "y_true": y.astype(np.uint32),
            "thresholds": thresholds,
            "scales": np.array(scales, np.float64),
        }
        entry = {"file": fname, "name": name, "variants": [], "cellpose": []}
        for vname, pred, with_cp in variants:
            assert pred.shape == y.shape, (name, vname)
            ref = mc.reference(y, pred, mc.THRESHOLDS, scales, with_cp)
            arrays[f"{vname}__pred"] = pred.astype(np.uint32)
            for k, v in ref.items():
                arrays[f"{vname}__{k}"] = v
            entry["variants"].append(vname)
            entry["cellpose"].append(bool(with_cp))
            manifest["dataset"]["members"].append([fname, vname])
            ds_true.append(y)
            ds_pred.append(pred)
        np.savez_compressed(out / fname, **arrays)
        manifest["groups"].append(entry)
        print(f"{fname}: {y.shape[0]}x{y.shape[1]}, {len(np.unique(y)) - 1} objects, {len(variants)} variants")

    ds = mc.dataset_reference(ds_true, ds_pred, mc.THRESHOLDS)
    ds["thresholds"] = thresholds
    np.savez_compressed(out / "dataset.npz", **ds)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(f.stat().st_size for f in out.iterdir())
    print(f"{len(ds_true)} cases, {total / 1e6:.2f} MB in {out}")


if __name__ == "__main__":
    main()
