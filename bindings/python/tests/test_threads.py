"""One model shared by several threads gives the single-thread labels every time."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import cytoseg


def test_one_model_many_threads(model, example):
    crops = [example, example[::-1].copy(), example[16:300, 8:250]]
    single = [model.segment(c, tile_size=128) for c in crops]
    jobs = [i % len(crops) for i in range(8)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda i: (i, model.segment(crops[i], tile_size=128)), jobs))
    for i, labels in results:
        np.testing.assert_array_equal(labels, single[i])


def test_close_waits_for_running_calls(example):
    m = cytoseg.Model(device="cpu")
    started = threading.Event()
    seen = []

    def progress(done, total):
        seen.append((done, total))
        started.set()
        time.sleep(0.01)

    with ThreadPoolExecutor(max_workers=1) as pool:
        fut = pool.submit(m.segment, example, tile_size=64, progress=progress)
        assert started.wait(60)
        # close from this thread while the call runs: it must wait, not free the model under it
        m.close()
        # the run had reported its last batch before close returned (the future itself may be
        # resolved a moment later, after segment() returns on the pool thread)
        assert seen[-1][0] == seen[-1][1] > 1
        labels = fut.result(timeout=60)
    assert labels.max() > 0 and m.closed


def test_close_from_own_progress_callback_is_refused(example):
    m = cytoseg.Model(device="cpu")

    def progress(done, total):
        m.close()  # would wait for this very call forever: must raise instead

    try:
        try:
            m.segment(example, tile_size=128, progress=progress)
        except RuntimeError as e:
            assert "progress" in str(e)
        else:
            raise AssertionError("close() inside the callback did not raise")
        assert not m.closed
        assert m.segment(example, tile_size=128).max() > 0  # the model still works
    finally:
        m.close()
    assert m.closed
