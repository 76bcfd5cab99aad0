"""Writes tests/fixtures/sort/torch_argsort.npz: torch's CPU argsort of int32 keys with many ties
(the order Cellpose paints its seeds in), for the emulation in crates/core/src/flows/torch_sort.rs.

Run with the torch that cellpose==4.2.1.1 installs (tests/parity/requirements.txt):
    python tests/parity/make_sort_fixture.py
"""
from pathlib import Path

import numpy as np
import torch

out = Path(__file__).resolve().parents[1] / "fixtures" / "sort"
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(2026)
arrays = {}
for k, (n, top) in enumerate([(2, 2), (16, 3), (17, 3), (33, 5), (64, 4), (100, 12), (257, 6), (1000, 30),
                              (4000, 9), (12000, 200), (32767, 40), (32768, 40)]):
    keys = rng.integers(11, 11 + top, size=n).astype(np.int32)
    arrays[f"keys_{k}"] = keys
    arrays[f"order_{k}"] = torch.from_numpy(keys).argsort().numpy().astype(np.int32)
np.savez_compressed(out / "torch_argsort.npz", torch_version=np.array(torch.__version__), **arrays)
print(f"{len(arrays) // 2} arrays, torch {torch.__version__}")
