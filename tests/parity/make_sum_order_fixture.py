"""Writes tests/fixtures/sort/torch_sum_order.npz: the order in which torch's CPU `sum(dim=0)` adds
the rows of a (rows, n) tensor, column by column, for the neighbour sums of Cellpose's heat
diffusion (`_extend_centers_gpu`: 9 rows in 2-D, 7 in 3-D; float64, or float32 for images over
4e7 pixels). Each column is classified by comparing torch's sums with the two orders its kernels
use, over random trials: 1 = `row_sum`'s 4 interleaved accumulators, 2 = sequential, 0 = both
orders gave the same value every time. For the emulation in crates/core/src/flows/diffusion.rs.

Run with the torch that cellpose==4.2.1.1 installs (tests/parity/requirements.txt), on the
reference machine's thread count (2):
    python tests/parity/make_sum_order_fixture.py
"""
from pathlib import Path

import numpy as np
import torch

torch.set_num_threads(2)
out = Path(__file__).resolve().parents[1] / "fixtures" / "sort"
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(2026)


def orders(v):
    """Sequential and interleaved (torch's `row_sum` with 4 accumulators) column sums."""
    rows = v.shape[0]
    seq = v[0].copy()
    for i in range(1, rows):
        seq = seq + v[i]
    q = rows // 4
    part = [v[k].copy() for k in range(4)]
    for j in range(1, q):
        for k in range(4):
            part[k] = part[k] + v[4 * j + k]
    ilp = part[0]
    for i in range(4 * q, rows):
        ilp = ilp + v[i]
    for k in range(1, 4):
        ilp = ilp + part[k]
    return seq, ilp


cases, arrays = [], {}
sizes = list(range(2, 72)) + [3640, 3641, 4681, 4682, 4690, 4700, 10000, 10030, 20066]
sizes += [int(n) for n in rng.integers(80, 120_000, 12)]
for rows in (7, 9):
    for dtype in (np.float64, np.float32):
        for n in sizes:
            ilp_only = np.zeros(n, bool)
            seq_only = np.zeros(n, bool)
            for _ in range(8):
                v = (rng.random((rows, n)) * rng.choice([1.0, 1e-3, 1e3], size=(rows, n))).astype(dtype)
                got = torch.from_numpy(v).sum(dim=0).numpy()
                seq, ilp = orders(v)
                s, i = got == seq, got == ilp
                assert (s | i).all(), f"{rows} rows {dtype.__name__} {n}: neither order"
                ilp_only |= i & ~s
                seq_only |= s & ~i
            assert not (ilp_only & seq_only).any()
            arrays[f"order_{len(cases)}"] = np.where(ilp_only, 1, np.where(seq_only, 2, 0)).astype(np.uint8)
            cases.append((rows, np.dtype(dtype).itemsize, n))
np.savez_compressed(out / "torch_sum_order.npz", torch_version=np.array(torch.__version__),
                    cases=np.array(cases, dtype=np.int64).ravel(), **arrays)
print(f"{len(cases)} sums, torch {torch.__version__}")
