"""Scale-out with Dask: a folder over a LocalCluster, and a large image chunk by chunk."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import cytoseg

pytest.importorskip("dask.array", reason="dask is not installed")
distributed = pytest.importorskip("distributed", reason="distributed is not installed")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import dask_folder  # noqa: E402
import dask_large  # noqa: E402


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    )
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def test_folder_on_a_local_cluster(client, tmp_path, example, model, tifffile, cli):
    src = tmp_path / "in"
    src.mkdir()
    images = {"a": example, "b": example[::-1, ::-1].copy(), "c": example[:200, 40:].copy()}
    for name, img in images.items():
        tifffile.imwrite(src / f"{name}.tif", img)
    counts = dask_folder.segment_folder(src, tmp_path / "out", client, device="cpu")
    assert counts == {"ok": 3, "skipped": 0, "failed": 0, "cancelled": 0}
    # The engine's outputs, as the command line writes them, and one summary for the whole run.
    ref = tmp_path / "cli"
    cli("segment", str(src), "--out", str(ref), "--device", "cpu", "-q")
    for name in images:
        for suffix in ("_labels.tif", "_objects.csv"):
            f = f"{name}{suffix}"
            assert (tmp_path / "out" / f).read_bytes() == (ref / f).read_bytes(), f
        np.testing.assert_array_equal(
            tifffile.imread(tmp_path / "out" / f"{name}_labels.tif"), model.segment(images[name])
        )
    summary = (tmp_path / "out" / "summary.csv").read_text().splitlines()
    assert len(summary) == 4 and all(",skipped," in row for row in summary[1:])
    # Again: every image is finished, nothing is redone.
    again = dask_folder.segment_folder(src, tmp_path / "out", client, device="cpu")
    assert again == {"ok": 0, "skipped": 3, "failed": 0, "cancelled": 0}


def test_large_image_in_chunks_matches_whole_image(client, example, model):
    import dask.array as da

    mosaic = np.block([[example, example[:, ::-1]], [example[::-1], example[::-1, ::-1]]])
    whole = model.segment(mosaic)
    image = da.from_array(mosaic, chunks=256)  # 3 × 3 chunks, borders cut through nuclei
    labels = dask_large.segment_dask(image, depth=48, device="cpu").compute()
    assert labels.shape == mosaic.shape and labels.dtype == np.uint32
    ids = np.unique(labels[labels > 0])
    np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))  # sequential, no gaps
    stats = cytoseg.evaluate(whole, labels, thresholds=[0.5, 0.75])
    assert stats[0]["accuracy"] >= 0.95, stats[0]  # measured here: 1.0 (192 of 192 objects)
    # without merging across chunks, objects on chunk borders would be split in two
    naive = dask_large.segment_dask(image, depth=48, device="cpu", iou=2.0).compute()
    assert cytoseg.evaluate(whole, naive, 0.5)["accuracy"] < stats[0]["accuracy"]
