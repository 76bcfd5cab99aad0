"""The napari plugin with a real viewer (napari 0.9, PyQt6) under Xvfb."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

import cytoseg

napari = pytest.importorskip("napari", reason="napari is not installed")
pytest.importorskip("pytestqt", reason="pytest-qt is not installed")

from qtpy.QtCore import QTimer  # noqa: E402

from cytoseg._napari._evaluate import EvaluateWidget  # noqa: E402
from cytoseg._napari._widget import QC_SHOWN, SegmentWidget, format_qc  # noqa: E402


@pytest.fixture(autouse=True)
def private_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("CYTOSEG_NAPARI_SETTINGS", str(tmp_path / "settings.ini"))


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


def _segment_widget(viewer):
    w = SegmentWidget(viewer)
    viewer.window.add_dock_widget(w, name="cytoseg")
    w.device.value = "cpu"
    return w


def _click_run(qtbot, w):
    """Clicks Run from inside the event loop and waits until the run has started."""
    runs = w.runs
    QTimer.singleShot(0, w.run_button.native.click)
    qtbot.waitUntil(lambda: w.runs > runs, timeout=10_000)


def test_manifest_declares_widgets_and_sample():
    npe2 = pytest.importorskip("npe2")
    pm = npe2.PluginManifest.from_distribution("cytoseg")
    assert {w.display_name for w in pm.contributions.widgets} == {"Segment", "Evaluate", "Train"}
    assert [s.key for s in pm.contributions.sample_data] == ["nuclei_example"]


def test_plugin_widgets_dock_from_the_menu(viewer):
    _, seg = viewer.window.add_plugin_dock_widget("cytoseg", "Segment")
    _, ev = viewer.window.add_plugin_dock_widget("cytoseg", "Evaluate")
    assert isinstance(seg, SegmentWidget) and isinstance(ev, EvaluateWidget)
    viewer.open_sample("cytoseg", "nuclei_example")
    assert seg.image.value is viewer.layers["nuclei_example"]  # layer list follows the viewer


def test_sample_segment_features(viewer, qtbot, cli_segment):
    viewer.open_sample("cytoseg", "nuclei_example")
    image = viewer.layers["nuclei_example"]
    image.scale = (0.5, 0.25)
    image.translate = (10.0, -4.0)
    w = _segment_widget(viewer)
    assert w.image.value is image
    _click_run(qtbot, w)
    qtbot.waitUntil(lambda: not w.busy, timeout=120_000)
    assert w.last_error is None, w.status.value
    assert w.run_button.enabled and not w.cancel_button.enabled
    labels = viewer.layers["nuclei_example_labels"]
    assert isinstance(labels, napari.layers.Labels)
    (ref,) = cli_segment([cytoseg.example_image_path()])
    np.testing.assert_array_equal(labels.data, ref)  # same labels as the CLI
    assert tuple(labels.scale) == (0.5, 0.25)
    assert tuple(labels.translate) == (10.0, -4.0)
    feats = labels.features
    assert len(feats) == ref.max()
    np.testing.assert_array_equal(feats["label"], np.arange(1, ref.max() + 1))
    area = np.bincount(ref.ravel())[1:] * 0.5 * 0.25  # calibrated by the layer's scale
    np.testing.assert_allclose(feats["area"], area)
    assert any("intensity" in c for c in feats.columns)
    assert w.progress.value == w.progress.max > 0
    assert w.save_button.enabled
    # Hovering an object shows its own row (before the index column: its neighbour's).
    for value in (1, int(ref.max())):
        r, c = np.argwhere(ref == value)[0]
        assert f"label: {value}," in _hover(labels, (r, c)), _hover(labels, (r, c))


def _hover(layer, data_position) -> str:
    """The status line napari shows for the mouse over ``data_position`` of ``layer``."""
    world = layer.data_to_world(np.asarray(data_position, float))
    return layer.get_status(world, world=True)["coordinates"]


def test_run_again_updates_the_same_layer(viewer, qtbot):
    viewer.open_sample("cytoseg", "nuclei_example")
    w = _segment_widget(viewer)
    for diameter in (0.0, 25.0):
        w.diameter.value = diameter
        _click_run(qtbot, w)
        if w.busy:
            assert not w.run_button.enabled  # disabled while busy
            assert w.run() is None  # and a second start is refused
        qtbot.waitUntil(lambda: not w.busy, timeout=120_000)
        assert w.last_error is None, w.status.value
    assert [ly.name for ly in viewer.layers] == ["nuclei_example", "nuclei_example_labels"]
    assert viewer.layers["nuclei_example_labels"].metadata["cytoseg"]["diameter"] == 25.0


def test_cancel_stops_a_long_run(viewer, qtbot, example):
    big = np.tile(example, (6, 6))  # 1920 × 1920
    viewer.add_image(big, name="big")
    w = _segment_widget(viewer)
    w.image.value = viewer.layers["big"]
    w.tile_size.value = 64  # about 1,200 tiles: minutes of work
    _click_run(qtbot, w)
    assert w.busy and not w.run_button.enabled and w.cancel_button.enabled
    qtbot.waitUntil(lambda: w._tiles[0] > 0, timeout=60_000)
    done_before, total = w._tiles
    t0 = time.perf_counter()
    QTimer.singleShot(0, w.cancel_button.native.click)
    qtbot.waitUntil(lambda: not w.busy, timeout=60_000)
    assert isinstance(w.last_error, cytoseg.CancelledError)
    assert w.status.value == "Cancelled."
    assert w._tiles[0] < total
    assert time.perf_counter() - t0 < 30
    assert "big_labels" not in [ly.name for ly in viewer.layers]
    assert w.run_button.enabled and not w.cancel_button.enabled


def test_settings_are_remembered(viewer):
    w = _segment_widget(viewer)
    w.diameter.value = 23.0
    w.cellprob.value = -1.5
    w.flow.value = 0.55
    w.tile_size.value = 128
    w._save_settings()
    w2 = SegmentWidget(viewer)
    assert (
        w2.diameter.value,
        w2.cellprob.value,
        w2.flow.value,
        w2.tile_size.value,
        w2.device.value,
    ) == (23.0, -1.5, 0.55, 128, "cpu")


def test_qc_of_the_current_image_is_shown(viewer, qtbot, model, example):
    viewer.add_image(example, name="nuclei")
    w = _segment_widget(viewer)
    assert w.qc.values["focus_laplacian"].value == "–"  # nothing measured yet
    _click_run(qtbot, w)
    qtbot.waitUntil(lambda: not w.busy, timeout=120_000)
    assert w.last_error is None, w.status.value
    labels, flows = model.segment(example, return_flows=True)
    want = cytoseg.image_qc(example, labels, flows)
    assert w.last_qc[()] == pytest.approx(want, nan_ok=True)
    assert viewer.layers["nuclei_labels"].metadata["cytoseg"]["qc"] == w.last_qc[()]
    assert w.qc.title.value == "QC: nuclei"
    for key, _, tip in QC_SHOWN:
        shown = w.qc.values[key]
        assert shown.value == format_qc(want[key]) and shown.value != "–", key
        assert shown.tooltip == tip and "\n" not in tip
    assert 0.5 < want["mean_cellprob"] <= 1


def test_qc_follows_the_plane_in_view(viewer, qtbot, example):
    dim = (example // 4).astype(example.dtype)
    viewer.add_image(np.stack([example, dim]), name="stack")
    w = _segment_widget(viewer)
    w.image.value = viewer.layers["stack"]
    _click_run(qtbot, w)
    qtbot.waitUntil(lambda: not w.busy, timeout=120_000)
    assert w.last_error is None, w.status.value
    assert set(w.last_qc) == {(0,), (1,)}
    viewer.dims.set_current_step(0, 1)
    assert w.qc.title.value == "QC: stack (1,)"
    assert w.qc.values["signal"].value == format_qc(w.last_qc[(1,)]["signal"])
    viewer.dims.set_current_step(0, 0)
    assert w.qc.values["signal"].value == format_qc(w.last_qc[(0,)]["signal"])
    assert w.last_qc[(1,)]["signal"] < w.last_qc[(0,)]["signal"]


def test_stack_is_segmented_plane_by_plane(viewer, qtbot, model, example, tmp_path, monkeypatch):
    flipped = example[::-1].copy()
    viewer.add_image(np.stack([example, flipped]), name="stack", scale=(3.0, 1.0, 1.0))
    w = _segment_widget(viewer)
    w.image.value = viewer.layers["stack"]
    assert w.save_table(tmp_path / "early.csv") is None and "run first" in w.status.value
    assert not w.save_button.enabled
    _click_run(qtbot, w)
    qtbot.waitUntil(lambda: not w.busy, timeout=120_000)
    assert w.last_error is None, w.status.value
    out = viewer.layers["stack_labels"]
    assert out.data.shape == (2, *example.shape) and tuple(out.scale) == (3.0, 1.0, 1.0)
    first, second = model.segment(example), model.segment(flipped)
    # The engine's convention: each plane labelled 1..n, as cytoseg segment writes a stack.
    np.testing.assert_array_equal(out.data[0], first)
    np.testing.assert_array_equal(out.data[1], second)
    assert w.status.value.startswith(f"{int(first.max()) + int(second.max())} objects")
    # The whole table: the plane's position first, then the plane's objects table.
    objects = out.metadata["cytoseg"]["objects"]
    assert list(objects.columns[:2]) == ["index-0", "label"]
    for k, plane, lab in ((0, example, first), (1, flipped, second)):
        rows = objects[objects["index-0"] == k].drop(columns="index-0").reset_index(drop=True)
        expected = cytoseg.measure(lab, plane, pixel_size=None, as_frame=True)
        pd.testing.assert_frame_equal(rows, expected)
    # Save table: the whole stack's table, as CSV.
    written = w.save_table(tmp_path / "stack_objects.csv")
    assert written == tmp_path / "stack_objects.csv" and "objects written" in w.status.value
    pd.testing.assert_frame_equal(pd.read_csv(written), objects, check_dtype=False)
    assert w.save_table(tmp_path / "missing" / "x.csv") is None
    assert "Could not write" in w.status.value
    # A failed write (here: its temporary file cannot be made) leaves the file it would
    # have replaced as it was.
    (tmp_path / "keep.csv").write_text("old\n")
    (tmp_path / "keep.csv.part").mkdir()
    assert w.save_table(tmp_path / "keep.csv") is None and "Could not write" in w.status.value
    assert (tmp_path / "keep.csv").read_text() == "old\n"
    # The button asks where (the dialog answered here), then writes the same table.
    from qtpy.QtWidgets import QFileDialog

    asked = []

    def answer(parent, caption, start, filt):
        asked.append(start)
        return str(tmp_path / "from_button.csv"), filt

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(answer))
    w.save_button.native.click()
    assert asked and asked[0].endswith("stack_labels_objects.csv")
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "from_button.csv"), objects, check_dtype=False
    )
    # napari keys features by label value: the layer shows the rows of the plane in view.
    for k, lab in ((1, second), (0, first)):
        viewer.dims.set_current_step(0, k)
        feats = out.features
        assert (feats["index-0"] == k).all()
        np.testing.assert_array_equal(feats["label"], np.arange(1, int(lab.max()) + 1))
        for value in (1, int(lab.max())):
            r, c = np.argwhere(lab == value)[0]
            assert f"label: {value}," in _hover(out, (k, r, c)), _hover(out, (k, r, c))


def test_evaluate_widget(viewer, model, example, tifffile):
    from .conftest import REPO

    truth = tifffile.imread(REPO / "models" / "examples" / "nuclei_example_labels.tif")
    pred = model.segment(example)
    viewer.add_labels(truth, name="truth")
    viewer.add_labels(pred, name="pred")
    w = EvaluateWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.truth.value = viewer.layers["truth"]
    w.pred.value = viewer.layers["pred"]
    w.thresholds.value = "0.5, 0.9"
    records = w.run()
    assert records == cytoseg.evaluate(truth, pred, thresholds=[0.5, 0.9])
    assert w.table.shape == (2, 13)
    assert "Dice" in w.status.value
    w.thresholds.value = "0.5, x"
    assert w.run() == [] and "not a number" in w.status.value


def test_stack_into_3d_objects(viewer, qtbot, tifffile):
    """A (Z, Y, X) layer with z scaled twice xy, in "3-D flows" (anisotropy from the layer's
    scale) and "stitch" modes: the labels of the committed Cellpose-pipeline fixtures, one 3-D
    Labels layer with the image's scale."""
    from pathlib import Path

    d = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "volume_pipeline"
    stack = tifffile.imread(d / "nuclei_stack.tif")
    viewer.add_image(stack, name="stack", scale=(1.0, 0.5, 0.5))
    w = _segment_widget(viewer)
    w.image.value = viewer.layers["stack"]
    w.tiling.value = "cellpose"  # the fixtures are Cellpose's, made with its tiles
    for mode, fixture in (("3-D flows", "nuclei_3d_a2"), ("stitch", "nuclei_stitch")):
        w.stack_mode.value = mode
        _click_run(qtbot, w)
        qtbot.waitUntil(lambda: not w.busy, timeout=120_000)
        assert w.last_error is None, w.status.value
        labels = viewer.layers["stack_labels"]
        ref = np.load(d / f"{fixture}.npz")["labels"]
        np.testing.assert_array_equal(labels.data, ref)
        assert labels.data.ndim == 3 and tuple(labels.scale) == (1.0, 0.5, 0.5)
        feats = labels.features  # the engine's 3-D measurements, calibrated by the scale
        np.testing.assert_array_equal(feats["label"], np.arange(1, ref.max() + 1))
        np.testing.assert_allclose(feats["area"], np.bincount(ref.ravel())[1:] * 0.25)
        assert "centroid-2" in feats.columns and "solidity" in feats.columns
        assert labels.metadata["cytoseg"]["stack_mode"] == mode
    assert viewer.layers["stack_labels"].metadata["cytoseg"]["anisotropy"] is None
    # A 2-D image cannot be segmented in 3-D: said in the status line, nothing runs.
    viewer.add_image(stack[0], name="flat")
    w.image.value = viewer.layers["flat"]
    w.stack_mode.value = "3-D flows"
    assert w.run() is None
    assert "needs a (Z, Y, X) image layer" in w.status.value
