"""cytoseg.image_qc and cytoseg.qc_report (the C API's cytoseg_image_qc and cytoseg_qc_report)."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

import cytoseg

H, W = 20, 30


def _rectangles() -> tuple[np.ndarray, np.ndarray]:
    """Label 4 at 200 and label 9 at 100 on a background of 10 (as tests/c/test_measure.c)."""
    labels = np.zeros((H, W), np.uint32)
    labels[2:6, 3:11] = 4
    labels[10:19, 20:25] = 9
    image = np.where(labels == 4, 200, np.where(labels == 9, 100, 10)).astype(np.uint8)
    return image, labels


def test_image_qc_gives_the_worked_out_values():
    image, labels = _rectangles()
    qc = cytoseg.image_qc(image, labels)
    assert list(qc)[:2] == ["objects", "focus_laplacian"]
    assert qc["objects"] == 2
    assert qc["background"] == 10 and qc["signal"] == 100
    assert qc["saturated_fraction"] == pytest.approx(32 / 600, rel=1e-12)
    assert qc["dynamic_range"] == pytest.approx(190 / 255, rel=1e-12)
    assert qc["area_iqr"] == pytest.approx(6.5)
    assert math.isnan(qc["mean_cellprob"]) and math.isnan(qc["flow_qc_removed_fraction"])
    # With flows (cellprob logit 0: probability 0.5) and a pixel size.
    qc = cytoseg.image_qc(image, labels, np.zeros((3, H, W), np.float32), pixel_size=0.5)
    assert qc["mean_cellprob"] == 0.5
    assert qc["area_iqr"] == pytest.approx(6.5 * 0.25)
    # A channel of a multichannel image.
    rgb = np.stack([image, np.zeros_like(image), image], axis=-1)
    assert cytoseg.image_qc(rgb, labels, channel=0)["signal"] == 100
    assert cytoseg.image_qc(rgb, labels, channel=1)["signal"] == 0


def test_image_qc_refuses_bad_input():
    image, labels = _rectangles()
    with pytest.raises(ValueError, match="labels shape"):
        cytoseg.image_qc(image, labels[:-1])
    with pytest.raises(ValueError, match="flows must have shape"):
        cytoseg.image_qc(image, labels, np.zeros((2, H, W), np.float32))
    with pytest.raises(cytoseg.InvalidArgumentError, match="channel 3"):
        cytoseg.image_qc(image, labels, channel=3)
    with pytest.raises(cytoseg.NonFiniteError):
        cytoseg.image_qc(np.full((H, W), np.nan, np.float32), labels)


def test_image_qc_of_a_segmentation_equals_the_batch_summary(model, example, tmp_path):
    labels, flows = model.segment(example, return_flows=True)
    qc = cytoseg.image_qc(example, labels, flows)
    out = tmp_path / "run"
    model.segment_folder([cytoseg.example_image_path()], out)
    with open(out / "summary.csv", newline="") as f:
        row = next(csv.DictReader(f))
    for m in ("focus_laplacian", "saturated_fraction", "background", "signal",
              "contrast_to_noise", "mean_cellprob"):
        assert qc[m] == pytest.approx(float(row[m]), rel=1e-9), m
    assert qc["objects"] == labels.max()

    report = cytoseg.qc_report(out)
    assert report["html"] == out / "qc" / "qc_report.html" and report["html"].is_file()
    assert (report["images"], report["groups"]) == (1, 1)
    assert report["confounded"] is False


def _summary(folder, rows: int = 12):
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["file,status,objects,area_median,focus_laplacian,signal"]
    for k in range(rows):
        scope = "scopeA" if k < rows // 2 else "scopeB"
        lines.append(f"/data/{scope}/img{k:02d}.tif,ok,{0 if k == 3 else 40 + k},{100 + k},"
                     f"{0.2 + 0.01 * k:.3f},{500 + 3 * k}")
    (folder / "summary.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_qc_report_groups_and_flags(tmp_path):
    out = _summary(tmp_path / "run")
    r = cytoseg.qc_report(out, pattern="{scope}/*.tif", group_by=["scope"])
    assert r["html"].is_file() and (out / "qc" / "qc_images.csv").is_file()
    assert (r["images"], r["groups"]) == (12, 2)
    assert r["flagged"] >= 1  # the image without objects
    assert cytoseg.qc_report(out, pattern="{scope}/*.tif", group_by="scope")["groups"] == 2
    assert cytoseg.qc_report(str(out))["groups"] == 1


def test_qc_report_errors_name_the_problem(tmp_path):
    out = _summary(tmp_path / "run")
    with pytest.raises(cytoseg.InvalidArgumentError, match="plate"):
        cytoseg.qc_report(out, group_by="plate")
    with pytest.raises(cytoseg.InvalidArgumentError, match="summary.csv"):
        cytoseg.qc_report(tmp_path / "nothing")
    with pytest.raises(cytoseg.InvalidArgumentError, match="does not match the pattern"):
        cytoseg.qc_report(out, pattern="{a}/{b}/{c}/{d}/x.png")
