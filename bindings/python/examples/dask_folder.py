"""Segment every image of a folder on a Dask cluster.

Each worker process loads the model once (a per-process cache) and segments whole files; only
paths and object counts travel over the network. The same code runs on a laptop
(``LocalCluster``) or on a cluster (``--scheduler tcp://host:8786``; the workers need
``pip install cytoseg tifffile``, best with ``-c requirements-ci.txt`` so that they run the
client's versions, and a view of the folders).

    python dask_folder.py IN_DIR OUT_DIR [--workers 2] [--scheduler ADDRESS] [--diameter 17]

Writes ``OUT_DIR/<stem>_labels.tif`` (uint32) for every ``IN_DIR/*.tif``, atomically; existing
outputs are kept unless ``--overwrite``.
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


def cached_model(name: str, device: str) -> cytoseg.Model:
    """One model per (name, device) and process, shared by the worker's threads (a model is
    thread-safe)."""
    with _models_lock:
        key = (name, device)
        if key not in _models:
            _models[key] = cytoseg.Model(name, device=device)
        return _models[key]


def segment_file(
    path: str,
    out_dir: str,
    model: str = "nuclei",
    device: str = "cpu",
    overwrite: bool = False,
    **params: Any,
) -> tuple[str, int]:
    """Segments one file into ``out_dir/<stem>_labels.tif``; returns (output path, objects)."""
    import tifffile

    out = Path(out_dir) / f"{Path(path).stem}_labels.tif"
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists (pass overwrite=True to replace it)")
    labels = cached_model(model, device).segment(tifffile.imread(path), **params)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tifffile.imwrite(tmp, labels, compression="zlib")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)  # a failed write leaves no partial file behind
    return str(out), int(labels.max())


def segment_folder(
    in_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    client: Any,
    pattern: str = "*.tif",
    **kwargs: Any,
) -> list[tuple[str, int]]:
    """Maps :func:`segment_file` over ``in_dir/pattern`` on the Dask ``client``; returns
    (output path, object count) per input, in sorted input order."""
    paths = sorted(str(p) for p in Path(in_dir).glob(pattern))
    if not paths:
        raise FileNotFoundError(f"no {pattern} files in {in_dir}")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    futures = client.map(segment_file, paths, out_dir=str(out_dir), pure=False, **kwargs)
    return client.gather(futures)


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
    ap.add_argument("--overwrite", action="store_true")
    a = ap.parse_args()
    params = {"diameter": a.diameter} if a.diameter else {}
    if a.scheduler:
        client = Client(a.scheduler)
    else:
        client = Client(
            LocalCluster(n_workers=a.workers, threads_per_worker=a.threads, dashboard_address=None)
        )
    with client:
        for out, n in segment_folder(
            a.in_dir,
            a.out_dir,
            client,
            model=a.model,
            device=a.device,
            overwrite=a.overwrite,
            **params,
        ):
            print(f"{out}\t{n} objects")


if __name__ == "__main__":
    main()
