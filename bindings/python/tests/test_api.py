"""The Python API gives the CLI's labels and exposes every C entry point."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import cytoseg
from cytoseg._errors import EXCEPTIONS_BY_STATUS, STATUS_NAMES
from cytoseg.api import _image_for_engine

from .conftest import REPO


def test_version_matches_library_and_crate():
    assert cytoseg.__version__ == cytoseg.engine_version()
    cargo = REPO / "Cargo.toml"
    if cargo.is_file():
        m = re.search(r'^version\s*=\s*"([^"]+)"', cargo.read_text(), re.M)
        assert m and m.group(1) == cytoseg.__version__


def test_status_codes_cover_the_header():
    header = REPO / "include" / "cytoseg.h"
    if not header.is_file():
        pytest.skip(f"{header} not found")
    codes = {int(v): n for n, v in re.findall(r"CYTOSEG_STATUS_(\w+) = (\d+)", header.read_text())}
    assert codes == STATUS_NAMES
    assert set(codes) - {0} == set(EXCEPTIONS_BY_STATUS)


def test_bundled_model_and_info(model):
    assert "nuclei" in cytoseg.bundled_models()
    assert model.name == "nuclei"
    assert model.device == "cpu"
    assert model.info["sha256"] and model.diameter > 0
    lib = Path(model.info["onnxruntime_library"])
    assert lib.name.startswith("libonnxruntime") or lib.name.startswith("onnxruntime")


def test_example_matches_cli(model, example, cli_segment):
    (ref,) = cli_segment([cytoseg.example_image_path()])
    labels = model.segment(example)
    assert labels.dtype == np.uint32 and labels.shape == example.shape
    assert labels.max() > 10
    np.testing.assert_array_equal(labels, ref)


def test_parameters_reach_the_engine(model, example, cli_segment):
    flags = [
        "--diameter",
        "25",
        "--cellprob-threshold",
        "-0.5",
        "--flow-threshold",
        "0.6",
        "--tile-size",
        "64",
        "--min-size",
        "30",
    ]
    (ref,) = cli_segment([cytoseg.example_image_path()], *flags)
    labels = model.segment(
        example, diameter=25, cellprob_threshold=-0.5, flow_threshold=0.6, tile_size=64, min_size=30
    )
    np.testing.assert_array_equal(labels, ref)
    assert not np.array_equal(labels, model.segment(example))


def test_precision_reaches_the_engine(model, example, cli_segment):
    """The bundled nuclei model has a validated int8 variant: "auto" runs it (as the CLI's
    default does), "fp32" the float32 network (as ``--precision fp32``), and the two find the
    same nuclei on the example image."""
    assert model.info["precisions"] == ["fp32", "int8"]
    (ref32,) = cli_segment([cytoseg.example_image_path()], "--precision", "fp32")
    fp32 = model.segment(example, precision="fp32")
    np.testing.assert_array_equal(fp32, ref32)
    int8 = model.segment(example, precision="int8")
    np.testing.assert_array_equal(model.segment(example), int8)
    assert int8.max() == fp32.max()
    with pytest.raises(ValueError, match="unknown precision"):
        model.segment(example, precision="fp16")


def test_dsb_sample_matches_cli(model, dsb_sample, cli_segment, tifffile):
    paths = sorted((dsb_sample / "images").glob("*.tif"))
    refs = cli_segment(paths)
    for p, ref in zip(paths, refs, strict=True):
        labels = model.segment(tifffile.imread(p))
        np.testing.assert_array_equal(labels, ref, err_msg=str(p))


def test_layouts_without_copies_give_the_same_labels(model, example):
    big = np.zeros((400, 500), np.uint16)
    big[30:350, 70:390] = example
    crop = big[30:350, 70:390]  # rows 1000 bytes apart: passed with its row stride, no copy
    assert not crop.flags.c_contiguous
    passed, _, row = _image_for_engine(crop)
    assert np.shares_memory(passed, big) and row == 1000
    stack = np.stack([np.zeros_like(example), example, example // 2], axis=-1)
    assert np.shares_memory(_image_for_engine(stack[:, 8:])[0], stack)  # column crop: no copy
    ref = model.segment(example)
    np.testing.assert_array_equal(model.segment(crop), ref)
    np.testing.assert_array_equal(model.segment(example.astype(np.float64)), ref)
    np.testing.assert_array_equal(model.segment(example.T.copy().T), ref)  # Fortran order
    np.testing.assert_array_equal(model.segment(stack, channels=1), ref)
    np.testing.assert_array_equal(
        model.segment(np.moveaxis(stack, -1, 0), channels=[1], channel_axis=0), ref
    )


def test_flows_round_trip(model, example):
    labels, flows = model.segment(example, return_flows=True)
    assert flows.shape == (3, *example.shape) and flows.dtype == np.float32
    again = cytoseg.flows_to_labels(flows[:2], flows[2])
    np.testing.assert_array_equal(again, labels)


def test_labels_to_flows_points_to_the_centre():
    yy, xx = np.mgrid[:41, :41]
    disk = ((yy - 20) ** 2 + (xx - 20) ** 2 <= 100).astype(np.uint16)
    flows = cytoseg.labels_to_flows(disk)
    assert flows.shape == (2, 41, 41) and flows.dtype == np.float64
    norm = np.hypot(flows[0], flows[1])
    assert np.all(norm[disk == 0] == 0)
    inside = (disk == 1) & ((yy - 20) ** 2 + (xx - 20) ** 2 >= 9)
    assert np.allclose(norm[inside], 1, atol=1e-6)
    # flow points from the pixel towards the centre
    assert np.all(flows[0][inside] * (20 - yy[inside]) + flows[1][inside] * (20 - xx[inside]) > 0)
    back = cytoseg.flows_to_labels(flows.astype(np.float32) * 5, np.where(disk, 5.0, -5.0))
    assert back.max() == 1 and np.array_equal(back > 0, disk > 0)


def test_evaluate_matches_cli(cli, tmp_path, model, example, tifffile):
    truth_path = REPO / "models" / "examples" / "nuclei_example_labels.tif"
    if not truth_path.is_file():
        pytest.skip(f"{truth_path} not found")
    pred = model.segment(example)
    pred_path = tmp_path / "pred.tif"
    tifffile.imwrite(pred_path, pred)
    report = tmp_path / "r.json"
    cli(
        "evaluate",
        "--truth",
        str(truth_path),
        "--pred",
        str(pred_path),
        "--json",
        str(report),
        "--thresholds",
        "0.3,0.5,0.9",
    )
    ref = json.loads(report.read_text())["dataset"]
    got = cytoseg.evaluate(tifffile.imread(truth_path), pred, thresholds=[0.3, 0.5, 0.9])
    assert len(got) == 3
    for g, r in zip(got, ref, strict=True):
        for k in [
            "thresh",
            "fp",
            "tp",
            "fn",
            "precision",
            "recall",
            "accuracy",
            "f1",
            "n_true",
            "n_pred",
            "mean_true_score",
            "mean_matched_score",
            "panoptic_quality",
        ]:
            assert g[k] == r[k], k
    single = cytoseg.evaluate(tifffile.imread(truth_path), pred, thresholds=0.5)
    assert single == got[1]
    assert 0 < single["dice"] <= 1


def test_measure_against_numpy(model, example):
    labels = model.segment(example)
    table = cytoseg.measure(labels, example, as_frame=False)
    ids = np.unique(labels[labels > 0])
    np.testing.assert_array_equal(table["label"], ids)
    area = np.bincount(labels.ravel())[ids]
    np.testing.assert_allclose(table["area"], area)
    yy, xx = np.indices(labels.shape)
    cy = np.bincount(labels.ravel(), yy.ravel())[ids] / area
    np.testing.assert_allclose(table["centroid-0"], cy, rtol=1e-12)
    mean = np.bincount(labels.ravel(), example.ravel().astype(float))[ids] / area
    intensity = [k for k in table if "mean" in k and "intensity" in k]
    assert intensity, list(table)
    np.testing.assert_allclose(table[intensity[0]], mean, rtol=1e-9)
    cal, units = cytoseg.measure(
        labels, pixel_size=0.5, unit="um", as_frame=False, return_units=True
    )
    np.testing.assert_allclose(cal["area"], area * 0.25)
    assert "um" in units["area"]
    pd = pytest.importorskip("pandas")
    df = cytoseg.measure(labels)
    assert isinstance(df, pd.DataFrame) and len(df) == len(ids)


def test_stitch_labels_equals_cellpose_on_the_committed_cases():
    """Every committed stitching case (labelled by cellpose 4.2.1.1's stitch3D and 3-D
    fill_holes_and_remove_small_masks) comes out identical through the C API."""
    cases = sorted((REPO / "tests" / "fixtures" / "stitch").glob("*.npz"))
    assert len(cases) >= 20
    for path in cases:
        z = np.load(path)
        planes = z["planes"].astype(np.uint16)  # any integer type is taken
        got = cytoseg.stitch_labels(planes, float(z["threshold"]), int(z["min_size"]))
        assert got.dtype == np.uint32 and got.shape == planes.shape
        np.testing.assert_array_equal(got, z["expected"], err_msg=path.name)
        assert (planes == z["planes"]).all(), "the input is left as it was"


def test_3d_flows_to_labels_equal_cellpose_on_the_committed_cases():
    """Every committed 3-D flows case (labelled by cellpose 4.2.1.1's compute_masks with
    do_3D=True) comes out identical through the C API."""
    cases = sorted((REPO / "tests" / "fixtures" / "volume").glob("*.npz"))
    assert len(cases) >= 20
    for path in cases:
        z = np.load(path)
        got = cytoseg.flows_to_labels(
            z["dp"],
            z["cellprob"],
            cellprob_threshold=float(z["cellprob_threshold"]),
            niter=int(z["niter"]),
            min_size=int(z["min_size"]),
            max_size_fraction=float(z["max_size_fraction"]),
        )
        assert got.dtype == np.uint32 and got.shape == z["cellprob"].shape
        np.testing.assert_array_equal(got, z["expected"], err_msg=path.name)
    with pytest.raises(ValueError, match=r"\(3, Z, Y, X\)"):
        cytoseg.flows_to_labels(np.zeros((2, 3, 4, 4)), np.zeros((3, 4, 4)))
    with pytest.raises(cytoseg.InvalidArgumentError, match="single plane"):
        cytoseg.flows_to_labels(np.zeros((3, 1, 4, 4)), np.zeros((1, 4, 4)))


def test_3d_labels_to_flows_equal_cellpose_bit_for_bit():
    """Every committed labels → flows case of tests/fixtures/volume_flows (cellpose 4.2.1.1's
    masks_to_flows_gpu_3d, and masks_to_flows_gpu for two 2-D planes; flows stored at the mask
    voxels) comes out bit for bit through the C API, zero elsewhere."""
    cases = [p for p in sorted((REPO / "tests" / "fixtures" / "volume_flows").glob("*.npz"))
             if p.stem != "float32_sparse"]
    assert len(cases) >= 15
    for path in cases:
        z = np.load(path)
        labels = z["labels"]
        got = cytoseg.labels_to_flows(labels.astype(np.int32))  # any integer type is taken
        # (plane_sparse_* are 2-D planes: cellpose's masks_to_flows_gpu)
        assert got.dtype == np.float64 and got.shape == (labels.ndim,) + labels.shape
        np.testing.assert_array_equal(got[:, labels > 0].view(np.uint64),
                                      z["flows"].view(np.uint64), err_msg=path.name)
        assert (got[:, labels == 0] == 0).all()
    with pytest.raises(cytoseg.InvalidArgumentError, match="single plane"):
        cytoseg.labels_to_flows(np.ones((1, 4, 4), np.uint32))
    with pytest.raises(ValueError, match="2-D .* or 3-D"):
        cytoseg.labels_to_flows(np.ones((2, 2, 4, 4), np.uint32))


def test_evaluate_scores_volumes_as_stardist():
    """3-D label volumes are matched in 3-D: stardist.matching's numbers on committed volumes
    (tests/fixtures/metrics/volume_matching.json, made by stardist 0.9.2)."""
    import json

    want = json.loads((REPO / "tests" / "fixtures" / "metrics" / "volume_matching.json").read_text())
    for name, rows in want.items():
        z = np.load(REPO / "tests" / "fixtures" / "volume" / f"{name}.npz")
        got = cytoseg.evaluate(z["truth"], z["expected"], thresholds=[r["thresh"] for r in rows])
        for g, w in zip(got, rows):
            for field, value in w.items():
                assert g[field] == value, (name, w["thresh"], field)


def test_stitch_labels_refuses_bad_input():
    with pytest.raises(ValueError, match=r"\(Z, H, W\) stack"):
        cytoseg.stitch_labels(np.zeros((4, 4), np.uint32))
    with pytest.raises(cytoseg.InvalidArgumentError, match="stitch threshold"):
        cytoseg.stitch_labels(np.zeros((2, 4, 4), np.uint32), stitch_threshold=0.0)
    with pytest.raises(TypeError):
        cytoseg.stitch_labels(np.zeros((2, 4, 4), np.float32))


def _volume_fixture(name):
    from pathlib import Path

    d = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "volume_pipeline"
    return d, np.load(d / f"{name}.npz")


def test_segment_3d_equals_cellpose_pipeline(model, tifffile):
    """Model.segment_3d gives the labels of the committed Cellpose-pipeline fixtures (made by
    cellpose 4.2.1.1's own _run_net/_compute_masks around the same network), in both modes."""
    d, ref = _volume_fixture("nuclei_3d_a2")
    stack = tifffile.imread(d / "nuclei_stack.tif")
    calls = []
    labels, flows = model.segment_3d(
        stack,
        anisotropy=2.0,
        return_flows=True,
        progress=lambda a, b: calls.append((a, b)),
        tiling="cellpose",
    )
    assert labels.shape == stack.shape and labels.dtype == np.uint32
    np.testing.assert_array_equal(labels, ref["labels"])
    assert flows.shape == (4,) + stack.shape
    np.testing.assert_allclose(flows[..., 40:56, 40:56], ref["flows_window"], rtol=0, atol=1e-4)
    assert calls and calls[-1][0] == calls[-1][1]
    _, ref = _volume_fixture("nuclei_stitch")
    stitched = model.segment_3d(stack, stitch_threshold=0.25, tiling="cellpose")
    np.testing.assert_array_equal(stitched, ref["labels"])
    # float input and a channel axis in front: the same labels
    again = model.segment_3d(
        stack[None].astype(np.float32), stitch_threshold=0.25, channel_axis=0, tiling="cellpose"
    )
    np.testing.assert_array_equal(again, ref["labels"])


def test_segment_folder_makes_3d_objects(model, tifffile, tmp_path):
    """The folder batch in 3-D: do_3d and stitching give the committed Cellpose-pipeline labels
    as label stacks, run.json records the mode, and contradictory or bad modes are refused."""
    d, ref = _volume_fixture("nuclei_3d_a2")
    counts = model.segment_folder(
        d / "nuclei_stack.tif", tmp_path / "a", do_3d=True, anisotropy=2.0, tiling="cellpose"
    )
    assert counts == {"ok": 1, "skipped": 0, "failed": 0, "cancelled": 0}
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "a" / "nuclei_stack_labels.tif"), ref["labels"])
    assert '"do_3d"' in (tmp_path / "a" / "run.json").read_text()
    _, ref = _volume_fixture("nuclei_stitch")
    counts = model.segment_folder(
        d / "nuclei_stack.tif", tmp_path / "s", stitch_threshold=0.25, tiling="cellpose"
    )
    assert counts["ok"] == 1
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "s" / "nuclei_stack_labels.tif"), ref["labels"])
    with pytest.raises(ValueError, match="pick one"):
        model.segment_folder(d, tmp_path / "x", do_3d=True, stitch_threshold=0.25)
    with pytest.raises(ValueError, match="unknown tiling 'slow'"):
        model.segment_folder(d, tmp_path / "x", tiling="slow")
    with pytest.raises(ValueError, match="do_3d=True only"):
        model.segment_folder(d, tmp_path / "x", anisotropy=2.0)
    with pytest.raises(cytoseg.InvalidArgumentError, match="anisotropy"):
        model.segment_folder(d, tmp_path / "x", do_3d=True, anisotropy=-2.0)
    assert not (tmp_path / "x").exists()


def test_segment_3d_refuses_bad_stacks(model):
    with pytest.raises(cytoseg.CytosegError, match="at least 2 planes"):
        model.segment_3d(np.zeros((1, 32, 32), np.uint16))
    with pytest.raises(ValueError, match="planes, height, width"):
        model.segment_3d(np.zeros((32, 32), np.uint16))
    with pytest.raises(cytoseg.CytosegError, match="anisotropy -1"):
        model.segment_3d(np.zeros((3, 32, 32), np.uint16), anisotropy=-1.0)
    with pytest.raises(cytoseg.CytosegError, match="stitch threshold 0"):
        model.segment_3d(np.zeros((3, 32, 32), np.uint16), stitch_threshold=0.0)


def test_measure_label_stacks_in_3d_equals_skimage():
    """(Z, H, W) labels are measured in 3-D: the committed scikit-image 0.26 regionprops_table
    fixtures (tests/fixtures/measure3d, spacings (1, 1, 1) and (2, 0.5, 0.5)), solidity and
    intensities included (tolerance as tests/measure_parity.rs: skimage sums float32
    intensities in float32)."""
    from pathlib import Path

    d = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "measure3d"
    files = sorted(d.glob("*.npz"))
    assert len(files) >= 7
    for f in files:
        z = np.load(f)
        sp = z["spacing"]
        t = cytoseg.measure(
            z["labels"], z["intensity"], pixel_size=(sp[1], sp[2]), unit="um", z_spacing=sp[0],
            as_frame=False,
        )
        for name in z["columns"]:
            want = z[f"col_{name}"]
            np.testing.assert_allclose(t[str(name)], want, rtol=1e-6, atol=1e-9, err_msg=f"{f.name} {name}")
    with pytest.raises(ValueError, match="z_spacing is for"):
        cytoseg.measure(np.ones((4, 4), np.uint16), z_spacing=2.0)
    with pytest.raises(ValueError, match="does not match"):
        cytoseg.measure(np.ones((2, 4, 4), np.uint16), np.ones((3, 4, 4), np.float32))
