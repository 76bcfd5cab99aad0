"""Benchmark of z-stack segmentation: Cellpose 4.2.1.1's own pipeline around cytoseg's ONNX
network (volume_pipeline_reference.py's steps, timed in-process from normalization to labels,
onnxruntime on the CPU) against the whole `cytoseg segment` command (process start, reading,
writing labels; objects tables off), on a synthetic nuclei stack; checks the labels are equal.
cytoseg runs twice per run: with `--tiling cellpose` (Cellpose's tiles: labels must equal
Cellpose's) and with the default `--tiling fast` (planes whole; its speed-up, and the AP@0.5 of
its labels scored against Cellpose's with cellpose.metrics.average_precision).

    python tests/parity/bench_volume_pipeline.py [--mode 3d|stitch] [--planes 40 --side 256]
        [--anisotropy 2] [--runs 3]
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch
from cellpose import metrics, models, transforms

here = Path(__file__).parent
sys.path.insert(0, str(here))
from make_volume_pipeline_fixtures import make_stack  # noqa: E402
from pipeline_reference import OnnxNet  # noqa: E402

root = here.parents[1]


def reference(model_dir, stack, mode, anisotropy):
    m = json.loads((model_dir / "manifest.json").read_text())
    model = models.CellposeModel.__new__(models.CellposeModel)
    model.net = OnnxNet(model_dir / m["model"]["file"], m["input"]["name"], m["output"]["name"])
    model.device = torch.device("cpu")
    model.backbone = "onnx"
    t0 = time.perf_counter()
    x = transforms.normalize_img(stack.astype(np.float32)[..., None], normalize=True, norm3D=True,
                                 percentile=(m["normalization"]["low"], m["normalization"]["high"]))
    do_3D = mode == "3d"
    dP, cellprob, _ = model._run_net(x, batch_size=8, tile_overlap=m["tiling"]["overlap"],
                                     bsize=m["tiling"]["tile_size"], anisotropy=anisotropy,
                                     do_3D=do_3D)
    d = m["mask_defaults"]
    masks = model._compute_masks(x.shape, dP, cellprob, flow_threshold=d["flow_threshold"],
                                 cellprob_threshold=d["cellprob_threshold"], min_size=d["min_size"],
                                 max_size_fraction=d["max_size_fraction"], niter=200,
                                 stitch_threshold=0.0 if do_3D else 0.25, do_3D=do_3D)
    return time.perf_counter() - t0, np.asarray(masks).astype(np.uint32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["3d", "stitch"], default="3d")
    ap.add_argument("--planes", type=int, default=40)
    ap.add_argument("--side", type=int, default=256)
    ap.add_argument("--anisotropy", type=float, default=2.0)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(2)
    nuclei = max(4, int(22 * a.planes * a.side * a.side / (20 * 96 * 96)))
    stack, n, truth = make_stack(shape=(a.planes, a.side, a.side), nuclei=nuclei, truth=True)
    exe = root / "target" / "release" / "cytoseg"
    model_dir = root / "models" / "nuclei"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = tmp / "stack.tif"
        tifffile.imwrite(path, stack)
        mode_args = (["--do-3d", "--anisotropy", str(a.anisotropy)] if a.mode == "3d"
                     else ["--stitch-threshold", "0.25"])
        ref_t, ours_t, fast_t = [], [], []

        def cytoseg(out, tiling):
            t0 = time.perf_counter()
            subprocess.run([str(exe), "segment", "-q", str(path), "--out", str(out), "--no-objects",
                            "--model", str(model_dir), "--tiling", tiling] + mode_args, check=True)
            elapsed = time.perf_counter() - t0
            return elapsed, tifffile.imread(out / "stack_labels.tif").astype(np.uint32)

        for r in range(a.runs):
            t, want = reference(model_dir, stack, a.mode, a.anisotropy if a.mode == "3d" else None)
            ref_t.append(t)
            t, got = cytoseg(tmp / f"out{r}", "cellpose")
            ours_t.append(t)
            equal = np.array_equal(got, want)
            t, fast = cytoseg(tmp / f"fast{r}", "fast")
            fast_t.append(t)
            ap = float(metrics.average_precision([want], [fast], threshold=[0.5])[0][0, 0])
        # Both against the nuclei placed in the stack.
        ap_true = metrics.average_precision([truth, truth], [want, fast], threshold=[0.5])[0][:, 0]
        rm, om, fm = (statistics.median(v) for v in (ref_t, ours_t, fast_t))
        print(f"{a.mode} {a.planes}x{a.side}x{a.side} ({n} nuclei placed, {int(want.max())} masks): "
              f"cellpose {rm:.2f} s, cytoseg segment --tiling cellpose {om:.2f} s, speed-up "
              f"{rm / om:.2f}x (medians of {a.runs}); labels {'equal' if equal else 'DIFFER'}")
        print(f"  cytoseg segment (default fast tiling) {fm:.2f} s: {om / fm:.2f}x the cellpose "
              f"tiling, {rm / fm:.2f}x cellpose; {int(fast.max())} masks, AP@0.5 {ap:.4f} against "
              "Cellpose's labels")
        print(f"  AP@0.5 against the {n} nuclei placed: Cellpose (= cytoseg --tiling cellpose) "
              f"{ap_true[0]:.4f}, cytoseg fast tiling {ap_true[1]:.4f}")


if __name__ == "__main__":
    main()
