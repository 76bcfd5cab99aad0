"""Bad input raises a clear exception naming the problem; models close deterministically."""

from __future__ import annotations

import numpy as np
import pytest

import cytoseg


@pytest.mark.parametrize("shape", [(320,), (2, 3, 40, 40), ()])
def test_wrong_dimensions(model, shape):
    with pytest.raises(ValueError, match=r"2-D .*got shape"):
        model.segment(np.zeros(shape, np.uint16))


@pytest.mark.parametrize("dtype", [np.complex64, np.bool_, object, "U3"])
def test_wrong_dtype(model, dtype):
    with pytest.raises(TypeError, match="dtype"):
        model.segment(np.zeros((32, 32), dtype=dtype))


def test_nan_is_reported_by_the_engine(model, example):
    img = example.astype(np.float32)
    img[100, 7] = np.nan
    with pytest.raises(cytoseg.NonFiniteError) as e:
        model.segment(img)
    assert e.value.status == 103 and isinstance(e.value, ValueError)
    assert "NaN" in str(e.value) or "non-finite" in str(e.value).lower()


def test_engine_argument_errors(model, example):
    with pytest.raises(cytoseg.InvalidArgumentError):
        model.segment(np.zeros((1, 40), np.uint8))
    with pytest.raises(cytoseg.InvalidArgumentError, match="16"):
        model.segment(example, tile_size=50)
    with pytest.raises(ValueError, match="channel 3 does not exist"):
        model.segment(example, channels=3)
    with pytest.raises(ValueError, match="diameter"):
        model.segment(example, diameter=-3)


def test_missing_model():
    with pytest.raises(cytoseg.ModelError, match="no-such-model"):
        cytoseg.Model("no-such-model", device="cpu")


def test_bad_device():
    with pytest.raises(ValueError, match="unknown device"):
        cytoseg.Model(device="gpu9")


def test_closed_model(example):
    m = cytoseg.Model(device="cpu")
    m.close()
    assert m.closed
    m.close()  # a no-op
    with pytest.raises(ValueError, match="closed"):
        m.segment(example)
    with cytoseg.Model(device="cpu") as m2:
        assert not m2.closed
    assert m2.closed


def test_progress_can_cancel(model, example):
    calls = []

    def progress(done, total):
        calls.append((done, total))
        return False

    with pytest.raises(cytoseg.CancelledError):
        model.segment(example, tile_size=64, progress=progress)
    assert len(calls) == 1 and calls[0][1] > 1


def test_exception_in_progress_propagates(model, example):
    def progress(done, total):
        raise KeyError("from the callback")

    with pytest.raises(KeyError, match="from the callback"):
        model.segment(example, tile_size=64, progress=progress)


def test_progress_reports_every_batch(model, example):
    seen = []
    model.segment(example, tile_size=64, batch_size=2, progress=lambda d, t: seen.append((d, t)))
    total = seen[-1][1]
    assert seen[-1] == (total, total) and total > 2
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_flows_and_metrics_argument_errors():
    with pytest.raises(ValueError, match=r"\(2, H, W\)"):
        cytoseg.flows_to_labels(np.zeros((3, 8, 8)), np.zeros((8, 8)))
    with pytest.raises(ValueError, match="cellprob"):
        cytoseg.flows_to_labels(np.zeros((2, 8, 8)), np.zeros((8, 9)))
    dp = np.zeros((2, 8, 8), np.float32)
    dp[0, 3, 3] = np.inf
    with pytest.raises(cytoseg.NonFiniteError):
        cytoseg.flows_to_labels(dp, np.zeros((8, 8)))
    with pytest.raises(ValueError, match="shapes differ"):
        cytoseg.evaluate(np.zeros((4, 4), int), np.zeros((4, 5), int))
    with pytest.raises(ValueError, match="0..4294967295"):
        cytoseg.evaluate(np.full((4, 4), -1), np.zeros((4, 4), int))
    with pytest.raises(TypeError, match="integer label"):
        cytoseg.labels_to_flows(np.zeros((4, 4), np.float32))
    with pytest.raises(cytoseg.InvalidArgumentError):
        cytoseg.evaluate(np.zeros((4, 4), int), np.zeros((4, 4), int), thresholds=[1.5])
