"""Segment an image too large for one call (or one machine) with Dask, chunk by chunk.

Every chunk is segmented with a halo of ``depth`` pixels around it (as ``map_overlap``
does), so objects that cross a chunk border are seen whole by both chunks. Labels are then
made global: each chunk's labels are offset, and a label of one chunk is merged with a label
of a neighbouring chunk (sides and corners) when the two masks overlap with IoU >= 0.5
inside the region both chunks saw. Only labels present in a chunk's own core take part, and
with ``depth`` at least one object diameter those objects lie wholly inside both views.
A final pass maps every chunk through one lookup table to sequential labels 1..n.

Agreement with segmenting the whole image at once: not identical label ids, and not
pixel-identical either, because each chunk is normalized by its own percentiles (as Cellpose
normalizes each image). Measured on a 640×640 mosaic of the example image in 3×3 chunks of
256 px with depth 48: 192 objects both ways, matching AP 1.0 at IoU 0.5, 0.75 and 0.9 (the
test requires AP@0.5 >= 0.95); without the merge step, 229 objects and AP@0.5 0.84. Use
chunks of several object diameters (>= 256 px) and ``depth`` >= 2 diameters.

    python dask_large.py IMAGE.tif OUT.tif [--chunk 1024] [--depth 64] [--workers 2]
"""

from __future__ import annotations

import argparse
import itertools
import os
from typing import Any

import numpy as np

try:
    from dask_folder import cached_model
except ImportError:  # imported as a module from elsewhere
    from .dask_folder import cached_model  # type: ignore[no-redef]


def _segment_block(block: np.ndarray, model: str, device: str, params: dict) -> np.ndarray:
    return cached_model(model, device).segment(np.asarray(block), **params)


def _core_ids(labels: np.ndarray, core: tuple[slice, slice]) -> np.ndarray:
    ids = np.unique(labels[core])
    return ids[ids > 0]


def _match(
    a: np.ndarray,
    b: np.ndarray,
    sa: tuple[slice, slice],
    sb: tuple[slice, slice],
    core_a: np.ndarray,
    core_b: np.ndarray,
    iou: float,
) -> np.ndarray:
    """(k, 2) pairs (label in a, label in b) of the same object: IoU >= ``iou`` over the
    region both saw (``a[sa]`` and ``b[sb]`` are that region)."""
    la = np.where(np.isin(a[sa], core_a), a[sa], 0).astype(np.uint64).ravel()
    lb = np.where(np.isin(b[sb], core_b), b[sb], 0).astype(np.uint64).ravel()
    both = (la > 0) & (lb > 0)
    if not both.any():
        return np.zeros((0, 2), np.uint64)
    keys, inter = np.unique((la[both] << np.uint64(32)) | lb[both], return_counts=True)
    pa, pb = keys >> np.uint64(32), keys & np.uint64(0xFFFFFFFF)
    ida, area_a = np.unique(la[la > 0], return_counts=True)
    idb, area_b = np.unique(lb[lb > 0], return_counts=True)
    union = area_a[np.searchsorted(ida, pa)] + area_b[np.searchsorted(idb, pb)] - inter
    keep = inter / union >= iou
    return np.stack([pa[keep], pb[keep]], axis=1)


def _lookup_tables(
    counts: list[int], core_ids: list[np.ndarray], matches: list[tuple[int, int, np.ndarray]]
) -> list[np.ndarray]:
    """Union-find over all chunk labels; sequential ids 1..n for the objects seen in cores."""
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    parent = np.arange(offsets[-1] + 1, dtype=np.int64)

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    for ia, ib, pairs in matches:
        for la, lb in pairs.astype(np.int64):
            ra, rb = find(offsets[ia] + la), find(offsets[ib] + lb)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    final: dict[int, int] = {}
    for b, ids in enumerate(core_ids):  # chunk raster order, then label order
        for lab in ids.astype(np.int64):
            final.setdefault(find(offsets[b] + lab), len(final) + 1)
    luts = []
    for b, n in enumerate(counts):
        lut = np.zeros(n + 1, np.uint32)
        for lab in range(1, n + 1):
            lut[lab] = final.get(find(offsets[b] + lab), 0)
        luts.append(lut)
    return luts


def segment_dask(
    image: Any,
    model: str = "nuclei",
    depth: int = 64,
    device: str = "cpu",
    iou: float = 0.5,
    **params: Any,
) -> Any:
    """Lazily segments a 2-D dask array chunk by chunk; returns a uint32 dask array of global
    labels with the image's chunks (compute it, or store it to zarr chunk by chunk)."""
    import dask
    import dask.array as da

    image = da.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"segment_dask needs a 2-D array, got shape {image.shape}")
    h, w = image.shape
    ys = np.concatenate([[0], np.cumsum(image.chunks[0])])
    xs = np.concatenate([[0], np.cumsum(image.chunks[1])])
    grid = (len(ys) - 1, len(xs) - 1)
    blocks = list(itertools.product(range(grid[0]), range(grid[1])))
    index = {b: k for k, b in enumerate(blocks)}
    ext, segs, cores, counts = {}, [], [], []
    seg_fn = dask.delayed(_segment_block, pure=True)
    for i, j in blocks:
        y0, y1, x0, x1 = ys[i], ys[i + 1], xs[j], xs[j + 1]
        ey0, ey1, ex0, ex1 = (
            max(0, y0 - depth),
            min(h, y1 + depth),
            max(0, x0 - depth),
            min(w, x1 + depth),
        )
        ext[(i, j)] = (ey0, ey1, ex0, ex1)
        seg = seg_fn(image[ey0:ey1, ex0:ex1], model, device, params)
        core = (slice(y0 - ey0, y1 - ey0), slice(x0 - ex0, x1 - ex0))
        segs.append((seg, core))
        cores.append(dask.delayed(_core_ids)(seg, core))
        counts.append(dask.delayed(lambda s: int(s.max()))(seg))
    matches = []
    for i, j in blocks:
        for di, dj in ((0, 1), (1, -1), (1, 0), (1, 1)):
            n = (i + di, j + dj)
            if n not in index:
                continue
            a, b = ext[(i, j)], ext[n]
            y0, y1, x0, x1 = max(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), min(a[3], b[3])
            if y0 >= y1 or x0 >= x1:
                continue
            sa = (slice(y0 - a[0], y1 - a[0]), slice(x0 - a[2], x1 - a[2]))
            sb = (slice(y0 - b[0], y1 - b[0]), slice(x0 - b[2], x1 - b[2]))
            ka, kb = index[(i, j)], index[n]
            pairs = dask.delayed(_match)(
                segs[ka][0], segs[kb][0], sa, sb, cores[ka], cores[kb], iou
            )
            matches.append(dask.delayed(tuple)([ka, kb, pairs]))
    luts = dask.delayed(_lookup_tables, nout=len(blocks))(counts, cores, matches)
    out_blocks = [[None] * grid[1] for _ in range(grid[0])]
    for k, (i, j) in enumerate(blocks):
        seg, core = segs[k]
        shape = (ys[i + 1] - ys[i], xs[j + 1] - xs[j])
        relabelled = dask.delayed(lambda s, c, lut: lut[s[c]])(seg, core, luts[k])
        out_blocks[i][j] = da.from_delayed(relabelled, shape=shape, dtype=np.uint32)
    return da.block(out_blocks)


def main() -> None:
    import dask.array as da
    import tifffile
    from dask.distributed import Client, LocalCluster

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("image")
    ap.add_argument("out")
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument("--depth", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--scheduler")
    ap.add_argument("--model", default="nuclei")
    ap.add_argument("--diameter", type=float)
    ap.add_argument("--overwrite", action="store_true")
    a = ap.parse_args()
    if os.path.exists(a.out) and not a.overwrite:
        raise SystemExit(f"{a.out} exists (pass --overwrite to replace it)")
    params = {"diameter": a.diameter} if a.diameter else {}
    client = (
        Client(a.scheduler)
        if a.scheduler
        else Client(LocalCluster(n_workers=a.workers, threads_per_worker=1, dashboard_address=None))
    )
    with client:
        try:
            pixels = tifffile.memmap(a.image, mode="r")  # uncompressed: read chunk by chunk
        except ValueError:
            pixels = tifffile.imread(a.image)
        image = da.from_array(pixels, chunks=a.chunk)
        labels = segment_dask(image, a.model, depth=a.depth, **params).compute()
    tmp = a.out + ".tmp"
    tifffile.imwrite(tmp, labels, compression="zlib")
    os.replace(tmp, a.out)
    print(f"{a.out}: {int(labels.max())} objects")


if __name__ == "__main__":
    main()
