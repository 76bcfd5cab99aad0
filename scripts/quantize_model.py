"""Adds an int8 variant to a model package and validates it with cytoseg itself.

    python scripts/quantize_model.py MODEL_DIR --calibration DIR --val-images DIR --val-labels DIR \
        --split "DESCRIPTION" [--count 100] [--method average|minmax] [--crops] [--seed 0] \
        [--no-fold] [--cytoseg target/release/cytoseg]

1. Calibration: the first COUNT images (sorted by name) in DIR, each whole (zero-padded to the
   model's size multiple, as the engine's default fast tiling feeds them) or, with --crops, one
   tile-sized crop at a seeded random position, normalized as the engine does (the manifest's
   percentiles, linear interpolation; channels averaged for one-channel models, the first C
   channels for C-channel ones; resized by diameter / default_diameter where the manifest has
   a default diameter). Use
   *training* images: the validation images must stay unseen.
2. Quantization (ONNX Runtime's static quantization, QDQ format) of a copy of the float
   network whose batch normalizations are folded into convolutions, style vectors and
   depthwise 1×1 convolutions, and whose style vectors are expanded to rows before they are
   added (scripts/fold_batchnorm.py; checked to give the float network's outputs within 1e-4;
   --no-fold skips both): int8 weights per output channel, uint8 activations; activation
   ranges from the min/max of each image averaged over the images (--method average, default)
   or the min/max over all of them (minmax); the convolutions of the input and the last
   convolution stay float32 (the input's intensities and the flows' precision). Afterwards
   the Shape nodes read the quantized tensors. On the nuclei network, 2 × 512² per call, 2
   threads, medians (the machine is shared): float32 0.56 s; quantized as it is 0.50 s (every
   batch normalization in float between a DequantizeLinear and a QuantizeLinear); folded
   0.36 s; style rows: ~5 % less again in the whole `cytoseg segment` of a 2048² mosaic.
   Before folding, measured on the nuclei model's validation split (AP@0.5, float32 0.8559):
   average over whole images 0.8548, average over crops 0.8533, minmax over crops 0.8268 to
   0.8529 depending on the images, minmax with every convolution quantized 0.8471.
   Memory: ONNX Runtime's calibrator keeps every activation of every calibration image until
   it computes the ranges: the nuclei model's 98 whole DSB2018 images (up to 1040×1388) took
   most of 24 GB; the histology model's images, upscaled 1.7× to its diameter, did not fit,
   and were calibrated on crops (--crops).
3. Validation: `cytoseg segment` then `cytoseg evaluate` on the validation images, once with
   the float32 network and once with the int8 one (each in a temporary package without
   variants, so nothing else differs), at the package defaults.
4. The manifest gains `variants: [{precision: "int8", file, sha256, bytes, recipe, validation}]`
   with both runs' AP at 0.5, 0.75 and 0.9. The engine's `precision auto` uses the variant only
   when its AP@0.5 is within 0.005 of float32's (see `Precision` in crates/core).

Runs in the model recipe's pinned environment (models/nuclei/train/requirements.txt: onnx,
onnxruntime, numpy, tifffile, opencv for packages with a default diameter).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import tifffile
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

import fold_batchnorm

INT8_FILE = "model.int8.onnx"
# min/max over all calibration images, or its average over images (CalibMovingAverage: one
# image with extreme activations does not set the range for all). ONNX Runtime's histogram
# methods (percentile, entropy) keep every activation of every image in memory: >22 GB here.
METHODS = {"minmax": {}, "average": {"CalibMovingAverage": True}}


def normalize(img: np.ndarray, manifest: dict) -> np.ndarray:
    """The engine's percentile normalization of one channel (numpy linear percentiles)."""
    n = manifest["normalization"]
    x = img.astype(np.float32)
    lo, hi = np.percentile(x, n["low"]), np.percentile(x, n["high"])
    if hi - lo > n.get("min_range", 1e-3):
        return (x - lo) / (hi - lo)
    return np.zeros_like(x)


def network_input(img: np.ndarray, manifest: dict) -> np.ndarray:
    """(C, H, W) float32 as the engine feeds the network with its default channel choice: a
    one-channel model gets the mean of the image's channels, a C-channel model the first C
    channels (zero-padded); each normalized, then resized by diameter / default_diameter
    where the manifest has a default diameter."""
    c_in = manifest["input"]["channels"]
    img = img.astype(np.float32)
    planes = [img] if img.ndim == 2 else [img[..., k] for k in range(img.shape[-1])]
    if c_in == 1:
        chans = [np.mean(planes, axis=0)]
    else:
        chans = planes[:c_in] + [np.zeros_like(planes[0])] * max(0, c_in - len(planes))
    x = np.stack([normalize(c, manifest) for c in chans])
    rescale = manifest["diameter"] / (manifest.get("default_diameter") or manifest["diameter"])
    if rescale != 1.0:
        import cv2  # noqa: PLC0415 (only packages with a default diameter need it)

        h, w = x.shape[1:]
        size = (max(2, int(w * rescale)), max(2, int(h * rescale)))
        x = np.stack([cv2.resize(c, size, interpolation=cv2.INTER_LINEAR) for c in x])
    return x


def calibration_crops(folder: Path, manifest: dict, count: int, seed: int, whole: bool) -> list[np.ndarray]:
    tile = manifest["tiling"]["tile_size"]
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".tif", ".tiff"))[:count]
    if not files:
        raise SystemExit(f"quantize_model.py: no .tif images in {folder}")
    rng = np.random.default_rng(seed)
    crops = []
    for f in files:
        x = network_input(tifffile.imread(f), manifest)
        c_in, h, w = x.shape
        if whole:
            m = manifest["input"]["size_multiple"]
            c = np.zeros((c_in, -(-h // m) * m, -(-w // m) * m), np.float32)
            c[:, :h, :w] = x
        else:
            y0 = int(rng.integers(0, max(1, h - tile + 1)))
            x0 = int(rng.integers(0, max(1, w - tile + 1)))
            c = np.zeros((c_in, tile, tile), np.float32)
            t = x[:, y0:y0 + tile, x0:x0 + tile]
            c[:, : t.shape[1], : t.shape[2]] = t
        crops.append(c[None])
    return crops


class Reader(CalibrationDataReader):
    def __init__(self, name: str, crops: list[np.ndarray]):
        self.name, self.it = name, iter(crops)

    def get_next(self):
        b = next(self.it, None)
        return None if b is None else {self.name: b}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def temp_package(root: Path, name: str, manifest: dict, network: Path) -> Path:
    """A package holding `network` as its only network (no variants)."""
    d = root / name
    d.mkdir()
    shutil.copy(network, d / "model.onnx")
    m = json.loads(json.dumps(manifest))
    m.pop("variants", None)
    m["model"].update(file="model.onnx", sha256=sha256(d / "model.onnx"),
                      bytes=(d / "model.onnx").stat().st_size)
    (d / "manifest.json").write_text(json.dumps(m, indent=2))
    return d


def ap_scores(cytoseg: str, package: Path, images: Path, labels: Path, out: Path) -> dict:
    files = sorted(str(p) for p in images.iterdir() if p.suffix.lower() in (".tif", ".tiff"))
    subprocess.run([cytoseg, "segment", *files, "--model", str(package), "--out", str(out),
                    "--no-objects", "-q"], check=True)
    r = subprocess.run([cytoseg, "evaluate", "--truth", str(labels), "--pred", str(out),
                        "--thresholds", "0.5,0.75,0.9"], check=True, capture_output=True,
                       text=True)
    scores = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 7 and parts[0] in ("0.50", "0.75", "0.90"):
            scores[f"ap{parts[0][2:]}"] = float(parts[6])
    if len(scores) != 3:
        raise SystemExit(f"quantize_model.py: could not read the AP table from:\n{r.stdout}")
    return scores


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="model package folder (manifest.json, model.onnx)")
    ap.add_argument("--calibration", type=Path, required=True, help="training images (.tif)")
    ap.add_argument("--count", type=int, default=100, help="calibration images (default 100)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--crops", action="store_true",
                    help="calibrate on one tile-sized crop per image instead of whole images")
    ap.add_argument("--method", choices=list(METHODS), default="average")
    ap.add_argument("--no-fold", action="store_true",
                    help="quantize the batch normalizations as they are (see fold_batchnorm.py)")
    ap.add_argument("--val-images", type=Path, required=True)
    ap.add_argument("--val-labels", type=Path, required=True)
    ap.add_argument("--split", required=True, help="the validation split, in words")
    ap.add_argument("--cytoseg", default="target/release/cytoseg")
    args = ap.parse_args()

    mpath = args.model / "manifest.json"
    manifest = json.loads(mpath.read_text())
    fp32 = args.model / manifest["model"]["file"]
    if sha256(fp32) != manifest["model"]["sha256"]:
        raise SystemExit(f"quantize_model.py: {fp32} does not match its manifest's SHA-256")
    crops = calibration_crops(args.calibration, manifest, args.count, args.seed, not args.crops)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pre = tmp / "pre.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        net = onnx.load(str(pre))
        if not args.no_fold:
            print(f"folded batch normalizations: {dict(fold_batchnorm.fold(net))}", file=sys.stderr)
            print(f"style vectors expanded to rows: {fold_batchnorm.style_rows(net)}",
                  file=sys.stderr)
            onnx.save(net, str(tmp / "folded.onnx"))
            diff = fold_batchnorm.verify(str(pre), str(tmp / "folded.onnx"), crops[0],
                                         manifest["input"]["name"])
            print(f"folded network vs original: {diff:.1e} (relative)", file=sys.stderr)
            pre = tmp / "folded.onnx"
        float_nodes = fold_batchnorm.first_and_last_layer(net)
        out = args.model / INT8_FILE
        quantize_static(str(pre), str(tmp / INT8_FILE),
                        Reader(manifest["input"]["name"], crops),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=float_nodes,
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options=METHODS[args.method])
        quantized = onnx.load(str(tmp / INT8_FILE))
        fold_batchnorm.shapes_of_quantized(quantized)
        onnx.save(quantized, str(out))
        print(f"quantized: {out} ({out.stat().st_size} bytes)", file=sys.stderr)
        scores = {}
        for name, net in (("fp32", fp32), ("int8", out)):
            pkg = temp_package(tmp, name, manifest, net)
            scores[name] = ap_scores(args.cytoseg, pkg, args.val_images, args.val_labels,
                                     tmp / f"pred_{name}")
            print(f"{name}: {scores[name]}", file=sys.stderr)
    n_val = sum(1 for p in args.val_images.iterdir() if p.suffix.lower() in (".tif", ".tiff"))
    variant = {
        "precision": "int8",
        "file": INT8_FILE,
        "sha256": sha256(out),
        "bytes": out.stat().st_size,
        "recipe": (f"scripts/quantize_model.py --method {args.method}"
                   f"{' --no-fold' if args.no_fold else ''}"
                   f"{' --crops --seed ' + str(args.seed) if args.crops else ''}: ONNX Runtime "
                   f"static quantization (QDQ), int8 weights per output channel, uint8 "
                   f"activations calibrated on {len(crops)} training images "
                   f"({'one crop each' if args.crops else 'whole'}); "
                   f"{'' if args.no_fold else 'batch normalizations folded and style vectors expanded to rows first; '}"
                   f"convolutions of the input and the last convolution float32"),
        "validation": {
            "split": args.split,
            "images": n_val,
            "ap50": scores["int8"]["ap50"], "ap50_fp32": scores["fp32"]["ap50"],
            "ap75": scores["int8"]["ap75"], "ap75_fp32": scores["fp32"]["ap75"],
            "ap90": scores["int8"]["ap90"], "ap90_fp32": scores["fp32"]["ap90"],
        },
    }
    manifest["variants"] = [v for v in manifest.get("variants", []) if v["precision"] != "int8"]
    manifest["variants"].append(variant)
    mpath.write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(variant, indent=2))


if __name__ == "__main__":
    main()
