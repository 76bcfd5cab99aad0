"""The object classifier from Python: training on picked objects in memory, classifying a label
image, clear errors, and agreement with ``cytoseg classify train|apply`` on a folder."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

import cytoseg

W, H, OBJECTS = 60, 40, 12


def synthetic() -> tuple[np.ndarray, np.ndarray]:
    """12 square objects: odd labels bright and flat, even labels dim and striped."""
    img = np.full((H, W), 10, np.uint8)
    lab = np.zeros((H, W), np.uint32)
    for lb in range(1, OBJECTS + 1):
        r0, c0 = (lb - 1) // 6 * 20 + 3, (lb - 1) % 6 * 10 + 2
        for r in range(r0, r0 + 6 + lb % 3):
            lab[r, c0 : c0 + 6] = lb
            img[r, c0 : c0 + 6] = 200 if lb % 2 else 60 + 40 * (r % 2)
    return img, lab


PICKS = {1: "flat", 3: "flat", 5: "flat", 7: "flat", 2: "striped", 4: "striped", 6: "striped",
         8: "striped"}


def test_train_and_classify_in_memory(tmp_path):
    img, lab = synthetic()
    out = tmp_path / "m.json"
    info = cytoseg.train_classifier(img, lab, PICKS, out, trees=30, seed=1, folds=2)
    assert info["path"] == str(out) and out.is_file()
    assert info["classes"] == ["flat", "striped"]
    assert 0.0 <= info["cv_accuracy"] <= 1.0
    assert np.array(info["confusion"]).sum() == len(PICKS)
    assert any(f.startswith("texture_") for f in info["features"])
    model = json.loads(out.read_text())
    assert model["format"] == "cytoseg-classifier" and model["format_version"] == 1
    assert model["training"]["labels"]["path"] == "picks"
    assert model["training"]["tables"][0]["path"] == "image 0"
    r = cytoseg.classify(out, img, lab)
    np.testing.assert_array_equal(r["label"], np.arange(1, OBJECTS + 1))
    assert list(r["class"]) == ["flat" if lb % 2 else "striped" for lb in range(1, OBJECTS + 1)]
    np.testing.assert_array_equal(r["class_index"], [lb % 2 for lb in range(OBJECTS)])
    assert np.all((r["probability"] >= 0.5) & (r["probability"] <= 1.0))
    assert r["classes"] == ["flat", "striped"]
    # Several images, pairs in order, names.
    info2 = cytoseg.train_classifier(
        [img, img[:, ::-1]],
        [lab, lab[:, ::-1]],
        [list(PICKS.items()), [(1, "flat"), (2, "striped")]],
        tmp_path / "two.json",
        names=["a", "b_flipped"],
        trees=20,
        folds=2,
    )
    assert info2["objects_per_class"] == {"flat": 5, "striped": 5}
    assert cytoseg.classifier_info(tmp_path / "two.json")["classes"] == ["flat", "striped"]


def test_bad_picks_and_shapes_are_named(tmp_path):
    img, lab = synthetic()
    out = tmp_path / "m.json"
    bad = [(1, "a"), (3, "a"), (0, "b"), (2, "b"), (4, "b")]
    with pytest.raises(cytoseg.InvalidArgumentError, match=r"sample 'cells', pick 2: on the backg"):
        cytoseg.train_classifier(img, lab, bad, out, names=["cells"])
    with pytest.raises(cytoseg.InvalidArgumentError, match=r"pick 1: .*no object 99"):
        cytoseg.train_classifier(img, lab, [(1, "a"), (99, "a"), (2, "b"), (4, "b")], out)
    with pytest.raises(cytoseg.InvalidArgumentError, match="only one class"):
        cytoseg.train_classifier(img, lab, {1: "a", 2: "a", 3: "a"}, out)
    with pytest.raises(ValueError, match="does not match image shape"):
        cytoseg.train_classifier(img, lab[1:], PICKS, out)
    with pytest.raises(ValueError, match="as many label images"):
        cytoseg.train_classifier([img, img], [lab], [PICKS, PICKS], out)
    with pytest.raises(ValueError, match="same dtype"):
        cytoseg.train_classifier([img, img.astype(np.uint16)], [lab, lab], [PICKS, PICKS], out)
    assert not out.exists()  # nothing is written on failure
    cytoseg.train_classifier(img, lab, PICKS, out, trees=10, folds=2)
    with pytest.raises(ValueError, match="does not match image shape"):
        cytoseg.classify(out, img, lab[:, 1:])
    with pytest.raises(cytoseg.InvalidArgumentError, match="lacks the classifier's feature column"):
        cytoseg.classify(out, img, lab, pixel_size=0.5)  # "area [um^2]" is not "area"
    with pytest.raises(cytoseg.CytosegIOError):
        cytoseg.classify(tmp_path / "missing.json", img, lab)


def test_same_model_and_classes_as_the_folder_path(cli, tifffile, tmp_path):
    """The model trained in Python on the CLI's labels equals ``cytoseg classify train`` on
    the folder with the same picks; its classes equal ``cytoseg classify apply``'s."""
    out = tmp_path / "out"
    cli("segment", str(cytoseg.example_image_path()), "--out", str(out), "--device", "cpu", "-q")
    img = tifffile.imread(cytoseg.example_image_path())
    lab = tifffile.imread(out / "nuclei_example_labels.tif")
    area = np.bincount(lab.ravel())[1:]
    order = np.argsort(area, kind="stable") + 1
    picks = [(int(lb), "small") for lb in order[:8]] + [(int(lb), "large") for lb in order[-8:]]
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "label", "class"])
        w.writerows([("nuclei_example", lb, c) for lb, c in picks])
    mem = cytoseg.train_classifier(
        img, lab, picks, tmp_path / "mem.json", trees=40, seed=2, folds=4
    )
    cli(
        "classify", "train", "--objects", str(out), "--labels", str(tmp_path / "labels.csv"),
        "--out", str(tmp_path / "disk.json"), "--trees", "40", "--seed", "2", "--folds", "4",
    )
    disk = cytoseg.classifier_info(tmp_path / "disk.json")
    for key in ("features", "classes", "cv_accuracy", "confusion", "objects_per_class"):
        assert mem[key] == disk[key], key
    m1 = json.loads((tmp_path / "mem.json").read_text())["forest"]
    m2 = json.loads((tmp_path / "disk.json").read_text())["forest"]
    assert m1 == m2
    # The in-memory model applied by the CLI = cytoseg.classify on the arrays.
    cli("classify", "apply", str(tmp_path / "mem.json"), str(out))
    with open(out / "nuclei_example_objects.csv") as f:
        rows = list(csv.DictReader(f))
    r = cytoseg.classify(tmp_path / "mem.json", img, lab)
    assert [int(x["label"]) for x in rows] == list(r["label"])
    assert [x["class"] for x in rows] == list(r["class"])
    np.testing.assert_array_equal([float(x["class_probability"]) for x in rows], r["probability"])
