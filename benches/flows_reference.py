"""Cellpose 4.2.1.1 reference for `benches/bench_flows.rs`: times flows -> labels on the CPU.

Usage:
    flows_reference.py DP.npy CELLPROB.npy FLOW_THRESHOLD REPS LABELS_OUT.npy

Runs, in the parity configuration (`torch.set_num_threads(2)`, CPU device),

    dynamics.compute_masks(dP, cellprob, niter=200, cellprob_threshold=0.0,
                           flow_threshold=FLOW_THRESHOLD, min_size=15,
                           max_size_fraction=0.4, device=torch.device("cpu"))

REPS times on the same input (after a small warm-up call on a crop, so that lazy torch/scipy
initialisation is not timed), saves the labels of the last run as uint32 to LABELS_OUT.npy and
prints one JSON object on the last line of stdout:

    {"median_s", "times_s", "peak_rss_mb", "base_rss_mb", "n_masks", "torch_threads", ...}

`peak_rss_mb` is the process's peak resident set (resource.getrusage ru_maxrss, which includes
the Python/torch runtime); `base_rss_mb` is that peak right after the inputs were loaded and the
warm-up ran, so `peak_rss_mb - base_rss_mb` is what the timed calls added.

With CYTOSEG_BENCH_STAGES=1 in the environment, one more (untimed-in-median) run times the steps
of compute_masks separately: follow_flows, get_masks_torch, remove_bad_flow_masks,
fill_holes_and_remove_small_masks ("stages" in the JSON).
"""
from __future__ import annotations

import json
import logging
import os
import resource
import statistics
import sys
import time


def maxrss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def time_stages(dynamics, dp, cellprob, flow_threshold, device):
    """One more run of compute_masks's steps, each timed (as in cellpose 4.2.1.1's code)."""
    import numpy as np
    import torch
    from cellpose import utils

    st = {}
    t0 = time.perf_counter()
    m = cellprob > 0.0
    inds = np.nonzero(m)
    p_final = dynamics.follow_flows(dp * m / 5.0, inds=inds, niter=200, device=device)
    st["follow_flows_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if not torch.is_tensor(p_final):
        p_final = torch.from_numpy(p_final).to(device, dtype=torch.int)
    else:
        p_final = p_final.int()
    mask = dynamics.get_masks_torch(p_final, inds, dp.shape[1:], max_size_fraction=0.4)
    st["get_masks_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if flow_threshold > 0 and mask.max() > 0:
        mask = dynamics.remove_bad_flow_masks(mask, dp, threshold=flow_threshold, device=device)
    st["remove_bad_flow_masks_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if mask.max() < 2**16 and mask.dtype != "uint16":
        mask = mask.astype("uint16")
    utils.fill_holes_and_remove_small_masks(mask, min_size=15)
    st["fill_holes_s"] = time.perf_counter() - t0
    return st


def main() -> int:
    if len(sys.argv) != 6:
        print(__doc__, file=sys.stderr)
        return 2
    dp_path, cp_path, flow_threshold, reps, out_path = sys.argv[1:]
    flow_threshold = float(flow_threshold)
    reps = max(1, int(reps))

    import numpy as np
    import torch

    torch.set_num_threads(2)
    logging.disable(logging.WARNING)
    import cellpose
    from cellpose import dynamics

    device = torch.device("cpu")
    dp = np.load(dp_path)
    cellprob = np.load(cp_path)
    assert dp.dtype == np.float32 and cellprob.dtype == np.float32, (dp.dtype, cellprob.dtype)
    assert dp.ndim == 3 and dp.shape[0] == 2 and dp.shape[1:] == cellprob.shape, (
        dp.shape,
        cellprob.shape,
    )

    def run(d, c):
        return dynamics.compute_masks(
            d,
            c,
            niter=200,
            cellprob_threshold=0.0,
            flow_threshold=flow_threshold,
            min_size=15,
            max_size_fraction=0.4,
            device=device,
        )

    # Warm-up on a small crop (not timed).
    s = min(128, cellprob.shape[0]), min(128, cellprob.shape[1])
    run(np.ascontiguousarray(dp[:, : s[0], : s[1]]), np.ascontiguousarray(cellprob[: s[0], : s[1]]))
    base = maxrss_mb()

    times = []
    masks = None
    for _ in range(reps):
        masks = None
        t0 = time.perf_counter()
        masks = run(dp, cellprob)
        times.append(time.perf_counter() - t0)
    peak = maxrss_mb()

    masks = np.asarray(masks).astype(np.uint32)
    np.save(out_path, masks)
    stages = None
    if os.environ.get("CYTOSEG_BENCH_STAGES", "0") not in ("", "0", "false", "no"):
        stages = time_stages(dynamics, dp, cellprob, flow_threshold, device)
    print(
        json.dumps(
            {
                "median_s": statistics.median(times),
                "times_s": times,
                "peak_rss_mb": peak,
                "base_rss_mb": base,
                "n_masks": int(masks.max()),
                "torch_threads": torch.get_num_threads(),
                "cellpose_version": getattr(cellpose, "version", "?"),
                "shape": list(cellprob.shape),
                "flow_threshold": flow_threshold,
                "stages": stages,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
