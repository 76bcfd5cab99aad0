"""Cellpose 4.2.1.1 whole-pipeline reference for `benches/bench_pipeline.rs`, timed per stage.

Usage:
    bench_pipeline_reference.py MODEL_DIR IMAGE.npy REPS THREADS LABELS_OUT.npy

Segments IMAGE (2-D uint8/uint16/float32 .npy) REPS times with the same steps as
`pipeline_reference.py` (Cellpose's own functions around the package's ONNX network run by
onnxruntime on the CPU), at the model's own diameter (no resizing), timing three stages that
match cytoseg's `Timings`:

* preprocess: float32 conversion + `transforms.normalize_img` (1/99 percentiles);
* network:    `core.run_net` (padding, tiles in batches of 8, taper blending); with a resize
              factor other than 1 it would also hold the resize back (not used here);
* masks:      `dynamics.resize_and_compute_masks` (follow flows, seeds, growth, flow-error QC,
              hole filling, small-mask removal), torch on the CPU.

ONNX Runtime gets THREADS intra-op threads and torch `set_num_threads(THREADS)`. A warm-up
(not timed) first runs a batch of 8 zero tiles through the network and segments a 256x256 crop.
Saves the last run's labels as uint32 to LABELS_OUT.npy and prints one JSON object on the last
line of stdout with the per-run stage times, the process's peak resident set (`ru_maxrss`, which
includes Python, torch and onnxruntime) and that peak right after the warm-up (`base_rss_mb`).
"""
from __future__ import annotations

import json
import logging
import resource
import sys
import time
from pathlib import Path


def maxrss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> int:
    if len(sys.argv) != 6:
        print(__doc__, file=sys.stderr)
        return 2
    model_dir, image_path, reps, threads, out_path = sys.argv[1:]
    reps, threads = max(1, int(reps)), max(1, int(threads))

    import numpy as np
    import onnxruntime as ort
    import torch

    torch.set_num_threads(threads)
    logging.disable(logging.WARNING)
    import cellpose
    from cellpose import core, dynamics, transforms

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from pipeline_reference import OnnxNet

    model_dir = Path(model_dir)
    m = json.loads((model_dir / "manifest.json").read_text())
    onnx_path = model_dir / m["model"]["file"]
    net = OnnxNet(onnx_path, m["input"]["name"], m["output"]["name"])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    net.sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])

    low, high = m["normalization"]["low"], m["normalization"]["high"]
    bsize, overlap = m["tiling"]["tile_size"], m["tiling"]["overlap"]
    d = m["mask_defaults"]
    niter = int(d.get("niter", 200))

    def segment(img):
        t0 = time.perf_counter()
        x = img.astype(np.float32)[:, :, None]
        x = transforms.normalize_img(x, normalize=True, percentile=(low, high))
        t1 = time.perf_counter()
        yf, _ = core.run_net(net, x[np.newaxis], batch_size=8, augment=False,
                             tile_overlap=overlap, bsize=bsize, rsz=None)
        cellprob = yf[..., -1]
        dP = yf[..., -3:-1].transpose((3, 0, 1, 2))
        t2 = time.perf_counter()
        masks = dynamics.resize_and_compute_masks(
            dP[:, 0], cellprob[0], niter=niter,
            cellprob_threshold=d["cellprob_threshold"], flow_threshold=d["flow_threshold"],
            resize=None, min_size=d["min_size"], max_size_fraction=d["max_size_fraction"],
            device=torch.device("cpu"))
        t3 = time.perf_counter()
        return masks, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)

    img = np.load(image_path)
    assert img.ndim == 2, img.shape
    # Warm-up, not timed: a batch of 8 zero tiles through the network (onnxruntime's arena
    # reaches its working size), then a 256x256 crop segmented.
    net(torch.zeros((8, m["input"]["channels"], bsize, bsize)))
    segment(np.ascontiguousarray(img[:256, :256]))
    base = maxrss_mb()
    runs = []
    masks = None
    for _ in range(reps):
        masks = None
        masks, t = segment(img)
        runs.append(t)
    peak = maxrss_mb()
    masks = np.asarray(masks).astype(np.uint32)
    np.save(out_path, masks)
    print(json.dumps({
        "preprocess_s": [r[0] for r in runs],
        "network_s": [r[1] for r in runs],
        "masks_s": [r[2] for r in runs],
        "total_s": [r[3] for r in runs],
        "peak_rss_mb": peak,
        "base_rss_mb": base,
        "n_masks": int(masks.max()),
        "threads": threads,
        "torch_threads": torch.get_num_threads(),
        "onnxruntime": ort.__version__,
        "cellpose_version": getattr(cellpose, "version", "?"),
        "shape": list(img.shape),
        "niter": niter,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
