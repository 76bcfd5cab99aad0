"""Turn a clone written by `cytoseg train` into a bundled model package under models/<name>/.

    python3 scripts/package_model.py --trained WORK/clone --meta models/NAME/train/meta.json \
        --validation WORK/val/validation.json --data-root WORK/data --out models/NAME

Copies the trained `model.onnx` unchanged (its sha256 stays the one in the manifest) and writes
`manifest.json`: the trainer's manifest (network, normalization, diameters, mask defaults and the
full lineage: parent and its sha256, every training file and its sha256, every parameter, the
losses) with the package's own `name`, `version`, `description`, `use_for`, `license` and
`training_data` from META, the `--validation` numbers of `cytoseg validate` on the held-back
split, and every path under --data-root written as `<data>/...` (the data never enters the
repository). The loss curve (`loss.csv`, `loss.png`) goes to `train/`. The model card,
`README.md`, is written by hand (it states the limits, which no script knows).

Standard library only.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

META_FIELDS = ("name", "version", "description", "use_for", "license", "training_data")


def relative_paths(value: Any, names: dict[str, str]) -> Any:
    """`value` with every path prefix of `names` (path -> short name) replaced in its strings."""
    if isinstance(value, dict):
        return {k: relative_paths(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [relative_paths(v, names) for v in value]
    if isinstance(value, str):
        for path, short in names.items():
            value = value.replace(path, short)
        return value
    return value


def validation_block(report: dict[str, Any]) -> dict[str, Any]:
    """AP and counts per IoU threshold from `cytoseg validate`'s validation.json."""
    ev = report["evaluation"]
    rows = {}
    for d in ev["dataset"]:
        rows[f"{d['thresh']:g}"] = {
            "ap": round(d["accuracy"], 4),
            "precision": round(d["precision"], 4),
            "recall": round(d["recall"], 4),
            "tp": d["tp"], "fp": d["fp"], "fn": d["fn"],
        }
    first = ev["dataset"][0]
    return {
        "tool": f"cytoseg validate {ev.get('cytoseg_version', '')}".strip(),
        "images": len(ev["images"]),
        "objects": first["n_true"],
        "parameters": report["parameters"],
        "criterion": ev.get("criterion", "iou"),
        "ap_definition": "tp / (tp + fp + fn), summed over the images (StarDist's accuracy)",
        "by_threshold": rows,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trained", type=Path, required=True, help="the clone `cytoseg train` wrote")
    ap.add_argument("--meta", type=Path, required=True, help="JSON with the package's own fields")
    ap.add_argument("--validation", type=Path, required=True, help="cytoseg validate's report")
    ap.add_argument("--data-root", type=Path, required=True, help="folder holding the data")
    ap.add_argument("--out", type=Path, required=True, help="models/<name>")
    args = ap.parse_args(argv)

    trained = json.loads((args.trained / "manifest.json").read_text())
    meta = json.loads(args.meta.read_text())
    missing = [k for k in META_FIELDS if k not in meta]
    if missing:
        raise SystemExit(f"{args.meta}: missing {', '.join(missing)}")
    if meta["name"] != args.out.name:
        raise SystemExit(f"{args.meta}: name {meta['name']!r} is not the folder's {args.out.name!r}")
    onnx = (args.trained / trained["model"]["file"]).read_bytes()
    if hashlib.sha256(onnx).hexdigest() != trained["model"]["sha256"]:
        raise SystemExit(f"{args.trained}: model.onnx does not match its manifest's sha256")
    report = json.loads(args.validation.read_text())

    repo = str(Path(__file__).resolve().parents[1])
    names = {
        str(args.data_root.resolve()): "<data>",
        str(args.trained.resolve()): "<clone>",
        repo + "/": "",
    }
    manifest = relative_paths(trained, names)
    manifest.update({k: meta[k] for k in META_FIELDS})
    manifest["validation"] = validation_block(report) | {"split": meta["training_data"]["split"]}

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train").mkdir(exist_ok=True)
    (args.out / "model.onnx").write_bytes(onnx)
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    for f in ("loss.csv", "loss.png"):
        shutil.copyfile(args.trained / f, args.out / "train" / f)
    v = manifest["validation"]["by_threshold"]
    print(f"{args.out}: {meta['name']} {meta['version']}, AP "
          + " / ".join(f"{v[t]['ap']:.3f}@{t}" for t in v))
    return 0


if __name__ == "__main__":
    sys.exit(main())
