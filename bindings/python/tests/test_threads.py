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

    def progress(done, total):
        started.set()
        time.sleep(0.01)

    with ThreadPoolExecutor(max_workers=1) as pool:
        fut = pool.submit(m.segment, example, tile_size=64, progress=progress)
        assert started.wait(60)
        # close from this thread while the call runs: it must wait, not free the model under it
        m.close()
        assert fut.done()
        labels = fut.result()
    assert labels.max() > 0 and m.closed
