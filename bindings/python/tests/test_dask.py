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
import dask_screen  # noqa: E402


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


def test_screen_fanned_out_per_well_merges_into_one_run(
    client, tmp_path, example, tifffile, cli, monkeypatch
):
    """The screen example: one run per well on the cluster, merged, equals one run over the plate;
    its Parquet tables open in pandas with the CSV tables' values."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow", reason="pyarrow is not installed")
    plate = tmp_path / "plate"
    plate.mkdir()
    views = [example, example[::-1], example[:, ::-1], example[::-1, ::-1], example[:200]]
    for k in range(8):  # four wells of two sites
        well, site, img = ["B02", "B03", "C02", "C03"][k // 2], k % 2 + 1, views[k % 5]
        for ch, data in ((1, img), (2, img // 2)):
            tifffile.imwrite(plate / f"P1_{well}_s{site}_w{ch}.tif", data)
    pmap = tmp_path / "map.csv"
    pmap.write_text("well,treatment,concentration,control\nB2,DMSO,0,yes\nB3,drug,1\n"
                    "C2,drug,10\nC3,drug,100\n")
    seg = ["--plate-map", str(pmap), "--device", "cpu"]
    ort = cytoseg._native.find_onnxruntime()
    if ort:  # the example's cytoseg commands find ONNX Runtime as the cli fixture's do
        monkeypatch.setenv("ORT_DYLIB_PATH", ort)
    runs = dask_screen.screen(plate, tmp_path / "fan", client, exe=str(cli.exe),
                              segment_args=seg, merge_args=["--value=area_mean", "--parquet"])
    assert [Path(r).name for r in runs] == ["P1_B02", "P1_B03", "P1_C02", "P1_C03"]
    whole = tmp_path / "whole"
    cli("segment", str(plate), "--layout", "auto", "--out", str(whole), "-q", *seg,
        "--value", "area_mean")
    merged = tmp_path / "fan" / "merged"
    for f in ("wells.csv", "dose_response.csv", "plate_P1_area_mean.svg"):
        assert (merged / f).read_text() == (whole / f).read_text(), f
    wells_csv = pd.read_csv(merged / "wells.csv")
    wells_pq = pd.read_parquet(merged / "wells.parquet")
    assert list(wells_pq.columns) == list(wells_csv.columns)
    pd.testing.assert_frame_equal(wells_pq, wells_csv, check_dtype=False)
    objects = pd.read_parquet(merged / "objects.parquet")
    assert len(objects) == wells_csv["objects"].sum()
    assert objects.groupby("well")["area"].mean().round(9).to_dict() == (
        wells_csv.set_index("well")["area_mean"].round(9).to_dict())
    # Run again: every run skips its finished fields, the merge gives the same table.
    before = (merged / "wells.csv").read_text()
    dask_screen.screen(plate, tmp_path / "fan", client, exe=str(cli.exe), segment_args=seg,
                       merge_args=["--value=area_mean", "--parquet"])
    assert (merged / "wells.csv").read_text() == before
