"""cytoseg.train: native fine-tuning from Python (the engine's trainer through the C API):
cancel from the progress callback, resume, the clone package, errors that write nothing."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import tifffile

import cytoseg


def _pair(images: Path, labels: Path, name: str, seed: int, n: int = 80) -> None:
    """Dark discs on a bright noisy background, and their labels."""
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
    tifffile.imwrite(images / f"{name}.tif", img.astype(np.uint16))
    tifffile.imwrite(labels / f"{name}.tif", lbl)


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, Path]:
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    for k in range(2):
        _pair(images, labels, f"img{k}", k)
    return images, labels


def test_train_cancel_resume_and_the_clone(data, tmp_path):
    images, labels = data
    out = tmp_path / "clone"
    seen = []
    opts = dict(steps=6, batch_size=2, crop=64, diameter=17.1)

    def stop_at_3(p):
        seen.append(p)
        return p["step"] < 3

    with pytest.raises(cytoseg.CancelledError):
        cytoseg.train("nuclei", images, labels, out, progress=stop_at_3, **opts)
    assert [p["step"] for p in seen] == [1, 2, 3]
    assert seen[-1]["steps"] == 6 and seen[-1]["loss"] > 0 and math.isnan(seen[-1]["val_loss"])
    assert (out / "checkpoint.cytoseg-train").is_file() and not (out / "model.onnx").exists()
    r = cytoseg.train("nuclei", images, labels, out, resume=True, **opts)
    assert r["steps"] == 6 and r["train_images"] == 2 and r["val_images"] == 0
    assert math.isnan(r["final_val_loss"]) and r["diameter"] == pytest.approx(17.1)
    for f in ["model.onnx", "manifest.json", "MODEL_CARD.md", "loss.csv", "loss.png"]:
        assert (out / f).is_file(), f
    m = json.loads((out / "manifest.json").read_text())
    assert m["name"] == "clone" and m["lineage"]["parent"]["name"] == "nuclei"
    assert "python cytoseg" in m["lineage"]["parameters"]["command"]
    # the clone loads and segments
    with cytoseg.Model(out, device="cpu") as model:
        lbl = model.segment(tifffile.imread(images / "img0.tif"))
    assert lbl.shape == (80, 80)


def test_train_errors_name_the_problem_and_write_nothing(data, tmp_path):
    images, labels = data
    out = tmp_path / "never"
    with pytest.raises(cytoseg.CytosegError, match="missing-folder"):
        cytoseg.train("nuclei", tmp_path / "missing-folder", labels, out, steps=2)
    with pytest.raises(cytoseg.InvalidArgumentError, match="crop"):
        cytoseg.train("nuclei", images, labels, out, steps=2, crop=50)
    with pytest.raises(ValueError):
        cytoseg.train("nuclei", images, labels, out, val_images=images)
    with pytest.raises(ValueError):
        cytoseg.train("nuclei", images, labels, out, steps=-1)
    assert not out.exists()


def test_a_raising_progress_callback_cancels_and_reraises(data, tmp_path):
    images, labels = data

    def boom(p):
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        cytoseg.train("nuclei", *data, tmp_path / "c", steps=4, batch_size=2, crop=64,
                      diameter=17.1, progress=boom)


def test_a_clone_saved_by_name_is_listed_and_loads_by_name(data, tmp_path, monkeypatch):
    images, labels = data
    user = tmp_path / "user-models"
    monkeypatch.setenv("CYTOSEG_USER_MODELS", str(user))
    assert cytoseg.user_model_dir() == user
    assert cytoseg.user_model_dir("mine") == user / "mine"
    for taken_or_bad in ["nuclei", "../up", ".hidden", "a b"]:
        with pytest.raises(cytoseg.InvalidArgumentError):
            cytoseg.user_model_dir(taken_or_bad)
    with pytest.raises(ValueError, match="out .* or name"):
        cytoseg.train("nuclei", images, labels, steps=2)
    assert "mine" not in cytoseg.list_models()
    cytoseg.train("nuclei", images, labels, name="mine", steps=2, batch_size=2, crop=64,
                  diameter=17.1)
    assert cytoseg.list_models()["mine"] == user / "mine"
    assert cytoseg.list_models()["nuclei"].is_dir()
    assert next(iter(cytoseg.list_models())) == cytoseg.DEFAULT_MODEL  # lists start on it
    with cytoseg.Model("mine", device="cpu") as model:
        assert model.segment(tifffile.imread(images / "img0.tif")).shape == (80, 80)
    with pytest.raises(cytoseg.InvalidArgumentError, match="exists already"):
        cytoseg.train("nuclei", images, labels, name="mine", steps=2)
