"""The Classifier block of the napari Segment widget (napari 0.9, PyQt6, under Xvfb): train
on cells picked with a Points layer, apply to the Labels layer."""

from __future__ import annotations

import json

import numpy as np
import pytest

import cytoseg

napari = pytest.importorskip("napari", reason="napari is not installed")
pytest.importorskip("pytestqt", reason="pytest-qt is not installed")


from cytoseg._napari._classify import point_picks  # noqa: E402
from cytoseg._napari._widget import SegmentWidget  # noqa: E402

from .test_classify import OBJECTS, PICKS, synthetic  # noqa: E402


@pytest.fixture(autouse=True)
def private_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("CYTOSEG_NAPARI_SETTINGS", str(tmp_path / "settings.ini"))


def _centre(lab: np.ndarray, label: int) -> list[float]:
    rr, cc = np.nonzero(lab == label)
    return [float(rr.mean()), float(cc.mean())]


def _setup(viewer, tmp_path, picks, scale=(1.0, 1.0)):
    img, lab = synthetic()
    viewer.add_image(img, name="cells", scale=scale)
    viewer.add_labels(lab, name="cells_labels", scale=scale)
    # Points in world coordinates (their own scale 1): the centre of each picked cell.
    pts = [np.multiply(_centre(lab, lb), scale) if lb else [0.0, 0.0] for lb, _ in picks]
    viewer.add_points(np.array(pts), name="picks", features={"class": [c for _, c in picks]})
    w = SegmentWidget(viewer)
    viewer.window.add_dock_widget(w, name="cytoseg")
    p = w.classifier
    p.image.value = viewer.layers["cells"]
    p.labels.value = viewer.layers["cells_labels"]
    p.points.value = viewer.layers["picks"]
    p.model_file.value = str(tmp_path / "model.json")
    return p, img, lab


def _click(qtbot, panel, button):
    # The click starts the worker before it returns; its end is delivered through the event loop,
    # which waitUntil runs (waiting for `busy` to turn on first raced a quick worker).
    button.native.click()
    assert panel.busy
    qtbot.waitUntil(lambda: not panel.busy, timeout=60_000)


def test_train_then_apply_from_the_widget(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    p, img, lab = _setup(viewer, tmp_path, list(PICKS.items()), scale=(0.5, 0.5))
    assert point_picks(p.points.value, p.labels.value) == list(PICKS.items())
    _click(qtbot, p, p.train_button)
    assert p.last_error is None, p.status.value
    assert "CV accuracy" in p.status.value and "model.json" in p.status.value
    model = json.loads((tmp_path / "model.json").read_text())
    assert model["classes"] == ["flat", "striped"]
    assert model["training"]["tables"][0]["path"] == "cells"
    assert "area [um^2]" in model["features"]  # the layer's scale calibrates, as in Segment
    assert p.table.to_dict("list")["true class"] == ["flat", "striped"]
    _click(qtbot, p, p.apply_button)
    assert p.last_error is None, p.status.value
    layer = viewer.layers["cells_labels"]
    want = ["flat" if lb % 2 else "striped" for lb in range(1, OBJECTS + 1)]
    assert list(layer.features["class"]) == want
    assert np.all(layer.features["class_probability"] >= 0.5)
    classes = viewer.layers["cells_labels_classes"]
    assert isinstance(classes, napari.layers.Labels)
    np.testing.assert_array_equal(classes.data[lab == 1], 1)
    np.testing.assert_array_equal(classes.data[lab == 2], 2)
    np.testing.assert_array_equal(classes.data[lab == 0], 0)
    assert tuple(classes.scale) == (0.5, 0.5)
    assert p.table.to_dict("list")["class"] == want
    assert "flat: 6" in p.status.value and "striped: 6" in p.status.value
    # The same classes as the Python API, with the same calibration.
    r = cytoseg.classify(tmp_path / "model.json", img, lab, pixel_size=0.5)
    assert list(r["class"]) == want
    # Applying again replaces the columns and the classes layer.
    _click(qtbot, p, p.apply_button)
    assert list(viewer.layers["cells_labels"].features["class"]) == want
    assert len([ly for ly in viewer.layers if ly.name == "cells_labels_classes"]) == 1


def test_a_point_on_the_background_is_named(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    picks = [*PICKS.items(), (0, "flat")]  # the last point lies on the background
    p, _, _ = _setup(viewer, tmp_path, picks)
    _click(qtbot, p, p.train_button)
    assert isinstance(p.last_error, cytoseg.InvalidArgumentError)
    assert "pick 8" in p.status.value and "background" in p.status.value
    assert not (tmp_path / "model.json").exists()
    assert p.train_button.enabled and p.apply_button.enabled


def test_points_without_classes_are_refused(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    p, _, _ = _setup(viewer, tmp_path, list(PICKS.items()))
    viewer.layers["picks"].features = {"kind": ["x"] * len(PICKS)}
    assert p.train() is None
    assert "no 'class' feature" in p.status.value
    viewer.layers.remove("cells_labels")  # the choices follow the viewer
    assert p.labels.value is None
    assert p.apply() is None
    assert "Choose the image and labels" in p.status.value
