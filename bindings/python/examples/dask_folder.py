"""Segment every image of a folder on a Dask cluster, with the engine's own batch run.

Each Dask task runs :meth:`cytoseg.Model.segment_folder` on one image into the shared output
folder, exactly as ``cytoseg segment`` would (``<stem>_labels.tif``, ``<stem>_objects.csv`` and
the per-image record that makes runs resumable), without the run files; each worker process
loads the model once. A last call on the client over the whole folder skips every finished
image (it only checks their records and hashes) and writes ``summary.csv`` and ``run.json`` for
the whole run. Nothing here re-implements an output: what lands in OUT_DIR is what the command
line writes. A task that fails or a killed worker leaves nothing half-written, and running the
script again redoes only what is missing.

The same code runs on a laptop (``LocalCluster``) or on a cluster (``--scheduler
tcp://host:8786``; the workers need ``pip install cytoseg``, best with ``-c
requirements-ci.txt`` so that they run the client's versions, and a view of the folders).

    python dask_folder.py IN_DIR OUT_DIR [--workers 2] [--scheduler ADDRESS] [--diameter 17]
"""

from __future__ import annotations

import argparse
import os
import threading
from pathlib import Path
from typing import Any

import cytoseg

_models: dict[tuple[str, str], cytoseg.Model] = {}
_models_lock = threading.Lock()

#: Extensions the engine reads (as ``cytoseg segment`` takes from a folder).
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".npy")


def cached_model(name: str, device: str) -> cytoseg.Model:
    """One model per (name, device) and process, shared by the worker's threads (a model is
    thread-safe)."""
    with _models_lock:
        key = (name, device)
        if key not in _models:
            _models[key] = cytoseg.Model(name, device=device)
        return _models[key]


def segment_one(
    path: str, out_dir: str, model: str = "nuclei", device: str = "cpu", **params: Any
) -> dict[str, int]:
    """One Dask task: the engine's batch run on one image, without the run files."""
    m = cached_model(model, device)
    return m.segment_folder(path, out_dir, jobs=1, run_files=False, **params)


def segment_folder(
    in_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    client: Any,
    model: str = "nuclei",
    device: str = "cpu",
    **params: Any,
) -> dict[str, int]:
    """Maps :func:`segment_one` over the images of ``in_dir`` on the Dask ``client``, then
    writes the run's ``summary.csv`` and ``run.json`` with one call over the folder (which
    skips the finished images). Returns the images by status over the tasks."""
    paths = sorted(str(p) for p in Path(in_dir).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"no images in {in_dir}")
    futures = client.map(
        segment_one, paths, out_dir=str(out_dir), model=model, device=device, pure=False, **params
    )
    totals = {"ok": 0, "skipped": 0, "failed": 0, "cancelled": 0}
    for counts in client.gather(futures):
        for k in totals:
            totals[k] += counts[k]
    # The summary of the whole: every image is finished now, so this only checks and records.
    cached_model(model, device).segment_folder(str(in_dir), out_dir, **params)
    return totals


def main() -> None:
    from dask.distributed import Client, LocalCluster

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("in_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--scheduler", help="address of a running Dask scheduler (default: local)")
    ap.add_argument("--workers", type=int, default=2, help="local worker processes")
    ap.add_argument("--threads", type=int, default=1, help="threads per local worker")
    ap.add_argument("--model", default="nuclei")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--diameter", type=float)
    a = ap.parse_args()
    params = {"diameter": a.diameter} if a.diameter else {}
    if a.scheduler:
        client = Client(a.scheduler)
    else:
        client = Client(
            LocalCluster(n_workers=a.workers, threads_per_worker=a.threads, dashboard_address=None)
        )
    with client:
        counts = segment_folder(
            a.in_dir, a.out_dir, client, model=a.model, device=a.device, **params
        )
        print(
            f"{counts['ok']} ok, {counts['skipped']} skipped, {counts['failed']} failed; "
            f"summary: {Path(a.out_dir) / 'summary.csv'}"
        )


if __name__ == "__main__":
    main()
