"""The napari Train widget with a real viewer under Xvfb: staging layers and folders, a tiny
native training run, the clone offered (and selected) by the Segment widget, cancel and resume,
names that are refused."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

import cytoseg

napari = pytest.importorskip("napari", reason="napari is not installed")
pytest.importorskip("pytestqt", reason="pytest-qt is not installed")
tifffile = pytest.importorskip("tifffile", reason="tifffile is not installed")
if not os.environ.get("DISPLAY") and os.environ.get("QT_QPA_PLATFORM") != "offscreen":
    pytest.skip(
        "no display: the napari Train widget tests need one (run under xvfb-run)",
        allow_module_level=True,
    )

from qtpy.QtCore import QTimer  # noqa: E402

from cytoseg._napari import _train  # noqa: E402
from cytoseg._napari._train import FolderPair, LayerPair, TrainWidget, stage  # noqa: E402
from cytoseg._napari._widget import SegmentWidget  # noqa: E402

#: A schedule of seconds: few steps, small batches and crops.
TINY = {"steps": 2, "batch_size": 2, "crop": 64, "diameter": 12.0, "minutes": 0.0}


@pytest.fixture(autouse=True)
def private_places(tmp_path, monkeypatch):
    """Settings, the user's models folder and the staging area of each test in tmp_path."""
    monkeypatch.setenv("CYTOSEG_NAPARI_SETTINGS", str(tmp_path / "settings.ini"))
    monkeypatch.setenv("CYTOSEG_USER_MODELS", str(tmp_path / "user-models"))
    staging = tmp_path / "tmp"
    staging.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(staging))
    return tmp_path


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


def _discs(seed: int, n: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """Dark discs on a bright noisy background, and their labels (tests/test_train.py's)."""
    rng = np.random.default_rng(seed)
    lbl = np.zeros((n, n), np.uint16)
    yy, xx = np.mgrid[:n, :n]
    count = 0
    for _ in range(30):
        cy, cx = rng.uniform(8, n - 8, 2)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= 36
        grown = (yy - cy) ** 2 + (xx - cx) ** 2 <= 81
        if (lbl[grown] == 0).all():
            count += 1
            lbl[disc] = count
    img = np.where(lbl > 0, 1500, 4000) + rng.integers(0, 600, (n, n))
    return img.astype(np.uint16), lbl


def _add_pair(viewer, name: str, seed: int) -> tuple:
    img, lbl = _discs(seed)
    return viewer.add_image(img, name=name), viewer.add_labels(lbl, name=f"{name}_truth")


def _train_widget(viewer, **fields) -> TrainWidget:
    w = TrainWidget(viewer)
    viewer.window.add_dock_widget(w, name="cytoseg train")
    w.show_advanced.value = True
    for k, v in {**TINY, **fields}.items():
        getattr(w, k).value = v
    return w


def _click(qtbot, button) -> None:
    QTimer.singleShot(0, button.native.click)
    qtbot.wait(10)


def _click_run(qtbot, w) -> None:
    """Clicks Run from inside the event loop and waits until the run has started."""
    runs = w.runs
    QTimer.singleShot(0, w.run_button.native.click)
    qtbot.waitUntil(lambda: w.runs > runs, timeout=10_000)


def _wait(qtbot, w, timeout: int = 120_000) -> None:
    qtbot.waitUntil(lambda: not w.busy, timeout=timeout)


def _user(name: str = "") -> Path:
    return Path(os.environ["CYTOSEG_USER_MODELS"]) / name


def test_the_train_widget_docks_from_the_menu(viewer):
    _, w = viewer.window.add_plugin_dock_widget("cytoseg", "Train")
    assert isinstance(w, TrainWidget)
    assert w.parent_model.value == "nuclei"
    assert w.parent_model.choices[-1] == "model folder…"
    assert w.clone_name.value == "nuclei-tuned"
    image, labels = _add_pair(viewer, "cells", 0)
    assert w.image.value is image and w.labels.value is labels  # layer lists follow the viewer
    assert w.regions.value is None
    segmented = viewer.add_labels(labels.data, name="cells_labels")  # what Segment makes
    assert w.labels.value is segmented  # chosen for its image
    w.labels.value = labels
    viewer.add_shapes(name="regions")
    assert w.labels.value is labels  # a choice made by hand stays


def test_train_from_layers_with_a_region_then_segment_with_the_clone(viewer, qtbot, private_places):
    image, labels = _add_pair(viewer, "cells", 0)
    rect = np.array([[10.0, 12.0], [10.0, 60.0], [55.0, 60.0], [55.0, 12.0]])
    shapes = viewer.add_shapes([rect], shape_type="rectangle", name="corrected")
    other = _add_pair(viewer, "more", 1)
    seg = SegmentWidget(viewer)
    viewer.window.add_dock_widget(seg, name="cytoseg")
    seg.device.value = "cpu"
    w = _train_widget(viewer, clone_name="my-cells")
    w.image.value, w.labels.value, w.regions.value = image, labels, shapes
    _click(qtbot, w.add_layers_button)
    w.image.value, w.labels.value, w.regions.value = other[0], other[1], None
    _click(qtbot, w.add_layers_button)
    assert w.pairs == [LayerPair(image, labels, shapes), LayerPair(*other)]
    assert w.pair_list.count() == 2 and "corrected" in w.pair_list.item(0).text()
    w.add_layers()  # the same pair twice is refused
    assert len(w.pairs) == 2 and "already" in w.status.value

    # what Run stages: the rasterized rectangle as the first pair's mask, all ones for the other
    staged = stage(w.pairs, private_places / "look")
    assert sorted(p.name for p in staged.images.iterdir()) == ["p1_cells.tif", "p2_more.tif"]
    np.testing.assert_array_equal(tifffile.imread(staged.images / "p1_cells.tif"), image.data)
    lab = tifffile.imread(staged.labels / "p1_cells.tif")
    assert lab.dtype == np.uint16
    np.testing.assert_array_equal(lab, labels.data)
    mask = tifffile.imread(staged.masks / "p1_cells.tif")
    expected = shapes.to_masks(mask_shape=(80, 80)).any(axis=0)
    np.testing.assert_array_equal(mask, expected.astype(np.uint8))
    assert mask[10:56, 12:61].all() and mask.sum() == 46 * 49
    assert tifffile.imread(staged.masks / "p2_more.tif").all()

    _click_run(qtbot, w)
    assert w.busy and not w.run_button.enabled and w.cancel_button.enabled
    job = w._job
    assert job.staged.masks is not None and not job.resume
    _wait(qtbot, w)
    assert w.last_error is None, w.status.value
    assert not job.staged.root.exists()  # the staged data is deleted
    assert list(Path(tempfile.gettempdir()).iterdir()) == []
    clone = _user("my-cells")
    for f in ["model.onnx", "manifest.json", "loss.csv", "loss.png"]:
        assert (clone / f).is_file(), f
    assert not (clone / _train.CHECKPOINT_FILE).exists()
    manifest = json.loads((clone / "manifest.json").read_text())
    assert manifest["lineage"]["parent"]["name"] == "nuclei"
    assert w.last_result["steps"] == 2 and w.last_result["train_images"] == 2
    assert "Saved my-cells" in w.status.value and str(clone) in w.status.value
    assert len(w.loss_plot.train) == 2 and w.progress.value == w.progress.max
    assert w.clone_name.value == "my-cells-2"  # the next run gets a free name
    assert "my-cells" in w.parent_model.choices

    # the clone is offered and selected in the Segment widget, and segments
    assert "my-cells" in seg.model.choices and seg.model.value == "my-cells"
    assert seg.model.choices[-1] == "model folder…"
    seg.image.value = image
    runs = seg.runs
    QTimer.singleShot(0, seg.run_button.native.click)
    qtbot.waitUntil(lambda: seg.runs > runs, timeout=10_000)
    qtbot.waitUntil(lambda: not seg.busy, timeout=120_000)
    assert seg.last_error is None, seg.status.value
    out = viewer.layers["cells_labels"]
    assert isinstance(out, napari.layers.Labels) and out.data.shape == (80, 80)
    assert out.metadata["cytoseg"]["model"] == "my-cells"
    # a Segment widget opened later lists the clone, remembered as the last model used
    later = SegmentWidget(viewer)
    assert "my-cells" in later.model.choices and later.model.value == "my-cells"


def test_cancel_keeps_a_checkpoint_and_run_again_resumes(viewer, qtbot):
    image, labels = _add_pair(viewer, "cells", 0)
    w = _train_widget(viewer, clone_name="resumed", steps=60)
    w.add_layers()
    _click_run(qtbot, w)
    qtbot.waitUntil(lambda: len(w.loss_plot.train) > 0, timeout=60_000)
    _click(qtbot, w.cancel_button)
    _wait(qtbot, w)
    assert isinstance(w.last_error, cytoseg.CancelledError)
    clone = _user("resumed")
    assert (clone / _train.CHECKPOINT_FILE).is_file() and not (clone / "manifest.json").exists()
    assert "Run again" in w.status.value and "resumed" in w.status.value
    cancelled_at = w.loss_plot.train[-1][0]
    assert cancelled_at < 60
    assert list(Path(tempfile.gettempdir()).iterdir()) == []
    assert w.clone_name.value == "resumed"  # kept, so that Run continues

    w.steps.value = 61  # other settings: the engine refuses the checkpoint, the widget says why
    _click_run(qtbot, w)
    _wait(qtbot, w)
    assert isinstance(w.last_error, cytoseg.InvalidArgumentError)
    assert "continuing needs the pairs and settings" in w.status.value
    assert (clone / _train.CHECKPOINT_FILE).is_file()
    w.steps.value = 60
    _click_run(qtbot, w)
    assert w._job.resume and w.status.value.startswith("Resuming resumed")
    _wait(qtbot, w)
    assert w.last_error is None, w.status.value
    assert w.last_result["steps"] == 60
    assert (clone / "manifest.json").is_file() and not (clone / _train.CHECKPOINT_FILE).exists()
    steps = [s for s, _ in w.loss_plot.train]
    assert steps[0] == 1 and steps[-1] == 60 and steps == sorted(steps)  # one curve


def test_taken_or_bad_names_and_bad_data_are_refused_writing_nothing(viewer, qtbot):
    image, labels = _add_pair(viewer, "cells", 0)
    w = _train_widget(viewer)
    assert w.run() is None and "add at least one training pair" in w.status.value
    w.add_layers()
    for name, message in [
        ("nuclei", "exists already"),
        ("../up", "model name"),
        ("a b", "model name"),
        ("", "type a name"),
    ]:
        w.clone_name.value = name
        assert w.run() is None, name
        assert message in w.status.value and w.status.value.startswith("Clone name"), name
    w.clone_name.value = "fine"
    labels.data = np.zeros_like(labels.data)
    assert w.run() is None and "is empty" in w.status.value
    labels.data = np.zeros((40, 40), np.uint16)
    assert w.run() is None and "same size" in w.status.value
    w.pairs.clear()
    viewer.add_image(np.zeros((3, 80, 80), np.uint16), name="stack")
    w.add_pair(LayerPair(viewer.layers["stack"], viewer.add_labels(_discs(2)[1])))
    assert w.run() is None and "2-D" in w.status.value
    assert w.runs == 0 and not w.busy
    assert not _user().exists() or list(_user().iterdir()) == []
    assert list(Path(tempfile.gettempdir()).iterdir()) == []


def test_engine_errors_show_in_the_status_line(viewer, qtbot):
    _add_pair(viewer, "cells", 0)
    w = _train_widget(viewer, clone_name="never", crop=50)  # not a multiple of 16
    w.add_layers()
    _click_run(qtbot, w)
    _wait(qtbot, w)
    assert isinstance(w.last_error, cytoseg.InvalidArgumentError)
    assert w.status.value.startswith("Training failed") and "crop" in w.status.value
    assert not _user("never").exists()
    assert w.run_button.enabled and not w.cancel_button.enabled


def test_folder_pairs_stage_with_prefixes_and_train(viewer, qtbot, tmp_path):
    images, labels, both = tmp_path / "images", tmp_path / "labels", tmp_path / "cellpose"
    for d in (images, labels, both):
        d.mkdir()
    for k in range(2):
        img, lbl = _discs(k)
        tifffile.imwrite(images / f"x{k}.tif", img)
        tifffile.imwrite(labels / f"x{k}_masks.tif", lbl)
        img, lbl = _discs(10 + k)
        tifffile.imwrite(both / f"y{k}.tif", img)  # Cellpose's layout: one folder
        tifffile.imwrite(both / f"y{k}_seg.tif", lbl)
    (images / ".hidden.tif").write_bytes(b"")
    w = _train_widget(viewer, clone_name="from-folders")
    w.images_folder.value, w.labels_folder.value = images, labels
    _click(qtbot, w.add_folders_button)
    w.images_folder.value = w.labels_folder.value = both
    assert w.add_folders()
    assert w.pairs == [FolderPair(images, labels), FolderPair(both, both)]
    assert "folders:" in w.pair_list.item(1).text()
    w.images_folder.value = tmp_path / "missing"
    assert not w.add_folders() and "does not exist" in w.status.value

    staged = stage(w.pairs, tmp_path / "look")
    assert sorted(p.name for p in staged.images.iterdir()) == [
        "p1_x0.tif",
        "p1_x1.tif",
        "p2_y0.tif",
        "p2_y1.tif",
    ]
    assert sorted(p.name for p in staged.labels.iterdir()) == [
        "p1_x0_masks.tif",
        "p1_x1_masks.tif",
        "p2_y0_seg.tif",
        "p2_y1_seg.tif",
    ]
    linked = staged.images / "p1_x0.tif"
    assert linked.is_symlink() and linked.resolve() == (images / "x0.tif").resolve()
    assert staged.masks is None

    _click_run(qtbot, w)
    _wait(qtbot, w)
    assert w.last_error is None, w.status.value
    assert w.last_result["train_images"] == 4
    assert (_user("from-folders") / "manifest.json").is_file()
    assert (images / "x0.tif").is_file()  # the sources are untouched


def test_an_rgb_layer_widens_a_one_channel_parent(viewer, qtbot):
    img, lbl = _discs(3)
    grey = (img // 20).astype(np.uint8)
    # RGBA, as napari opens many PNGs: the alpha is not staged
    rgba = np.stack([grey, grey // 2, 255 - grey, np.full_like(grey, 255)], axis=-1)
    viewer.add_image(rgba, name="colour", rgb=True)
    viewer.add_labels(lbl, name="colour_truth")
    w = _train_widget(viewer, clone_name="colour-cells")
    w.add_layers()
    _click_run(qtbot, w)
    assert w._job.options["channels"] is None  # automatic: the engine's rule
    _wait(qtbot, w)
    assert w.last_error is None, w.status.value
    manifest = json.loads((_user("colour-cells") / "manifest.json").read_text())
    assert manifest["input"]["channels"] == 3


def test_pairs_follow_the_layers_and_settings_are_remembered(viewer):
    image, labels = _add_pair(viewer, "cells", 0)
    w = _train_widget(viewer, clone_name="lab-cells-3", minutes=25.0, steps=300, seed=7)
    w.add_layers()
    w.pair_list.item(0).setSelected(True)
    w.remove_selected()
    assert w.pairs == [] and w.pair_list.count() == 0
    w.add_layers()
    viewer.layers.remove(labels)  # a pair whose layer is gone leaves the list
    assert w.pairs == [] and "removed" in w.status.value
    w._save_settings()
    w2 = TrainWidget(viewer)
    assert (w2.minutes.value, w2.steps.value, w2.seed.value, w2.crop.value) == (25.0, 300, 7, 64)
    assert w2.clone_name.value == "lab-cells"  # the stem, made unique
    assert w2.diameter.value == TINY["diameter"] and w2.parent_model.value == "nuclei"
