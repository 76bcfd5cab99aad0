"""Shared fixtures: the repository, the CLI used as the reference, the example image, data."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import cytoseg
from cytoseg import _native

REPO = Path(__file__).resolve().parents[3]
SHARED_SAMPLE = REPO.parent / "shared" / "data" / "dsb2018-fluo" / "sample"


def _cli() -> Path | None:
    env = os.environ.get("CYTOSEG_CLI")
    if env:
        return Path(env)
    p = REPO / "target" / "release" / "cytoseg"
    return p if p.is_file() else None


@pytest.fixture(scope="session")
def cli():
    """Runs the ``cytoseg`` command (the reference the bindings must agree with)."""
    exe = _cli()
    if exe is None:
        pytest.skip("the cytoseg CLI is not built (target/release/cytoseg; set CYTOSEG_CLI)")
    ort = _native.find_onnxruntime()

    def run(*args: str) -> subprocess.CompletedProcess:
        cmd = [str(exe), *args]
        env = dict(os.environ)
        if ort:
            env["ORT_DYLIB_PATH"] = ort
        return subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)

    run.exe = exe
    return run


@pytest.fixture(scope="session")
def tifffile():
    return pytest.importorskip("tifffile")


@pytest.fixture(scope="session")
def example(tifffile) -> np.ndarray:
    """The bundled example image (320×320 uint16)."""
    return tifffile.imread(cytoseg.example_image_path())


@pytest.fixture(scope="session")
def model():
    """One CPU model for the whole session."""
    with cytoseg.Model("nuclei", device="cpu") as m:
        yield m


@pytest.fixture(scope="session")
def cli_segment(cli, tifffile, tmp_path_factory):
    """``cli_segment(paths, *flags)`` → list of label arrays written by ``cytoseg segment``."""

    def run(paths: list[Path], *flags: str) -> list[np.ndarray]:
        out = tmp_path_factory.mktemp("cli")
        cli("segment", *map(str, paths), "--out", str(out), "--device", "cpu", *flags)
        return [tifffile.imread(out / f"{Path(p).stem}_labels.tif") for p in paths]

    return run


@pytest.fixture(scope="session")
def dsb_sample() -> Path:
    if not (SHARED_SAMPLE / "images").is_dir():
        pytest.skip(f"DSB2018 sample not found at {SHARED_SAMPLE}: skipping real-data tests")
    return SHARED_SAMPLE


def have_xvfb() -> bool:
    return bool(os.environ.get("DISPLAY")) or shutil.which("xvfb-run") is not None
