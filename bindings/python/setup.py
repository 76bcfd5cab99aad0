"""Build step of the cytoseg wheel: puts libcytoseg, the bundled models and the example image
inside the package before setuptools collects it.

From the repository (bindings/python two levels below Cargo.toml) it runs
``cargo build --release --lib`` first, unless ``CYTOSEG_SKIP_CARGO=1``; ``CYTOSEG_LIBRARY``
names a prebuilt library to bundle instead. Works offline: nothing is downloaded here.
The wheel is tagged for this platform (py3-none-<platform>): ctypes needs no Python ABI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1
    from wheel.bdist_wheel import bdist_wheel

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PKG = HERE / "src" / "cytoseg"
LIB = {"win32": "cytoseg.dll", "darwin": "libcytoseg.dylib"}.get(sys.platform, "libcytoseg.so")


def _built_library() -> Path:
    explicit = os.environ.get("CYTOSEG_LIBRARY")
    if explicit:
        return Path(explicit)
    if not (REPO / "Cargo.toml").is_file():
        bundled = PKG / "_lib" / LIB
        if bundled.is_file():
            return bundled
        raise SystemExit(
            f"cytoseg: {LIB} is not bundled and no cytoseg repository surrounds {HERE}: "
            "build from the repository, or set CYTOSEG_LIBRARY"
        )
    if os.environ.get("CYTOSEG_SKIP_CARGO") != "1":
        cmd = ["cargo", "build", "--release", "--lib", "--locked"]
        print("cytoseg:", " ".join(cmd), file=sys.stderr)
        try:
            subprocess.run(cmd, cwd=REPO, check=True)
        except FileNotFoundError:
            raise SystemExit(
                "cytoseg: cargo not found; install Rust or set CYTOSEG_LIBRARY"
            ) from None
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    if not target.is_absolute():
        target = REPO / target
    return target / "release" / LIB


def _copy_if_changed(src: Path, dst: Path) -> None:
    if (
        dst.is_file()
        and dst.stat().st_size == src.stat().st_size
        and dst.stat().st_mtime >= src.stat().st_mtime
    ):
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def stage_native_files() -> None:
    """Copies the library, models/<name>/ (top-level files) and the example image into src/."""
    lib = _built_library()
    if not lib.is_file():
        raise SystemExit(f"cytoseg: {lib} does not exist (cargo build --release --lib)")
    staged = PKG / "_lib" / LIB
    if lib.resolve() != staged.resolve():
        _copy_if_changed(lib, staged)
        strip = shutil.which("strip")
        if strip and sys.platform.startswith("linux"):
            # drop the line tables (about half the size); symbols stay for backtraces
            subprocess.run([strip, "--strip-debug", str(staged)], check=False)
    models = REPO / "models"
    if models.is_dir():
        for manifest in sorted(models.glob("*/manifest.json")):
            for f in manifest.parent.iterdir():
                if f.is_file():
                    _copy_if_changed(f, PKG / "models" / manifest.parent.name / f.name)
        example = models / "examples" / "nuclei_example.tif"
        if example.is_file():
            _copy_if_changed(example, PKG / "data" / example.name)
    if not list((PKG / "models").glob("*/manifest.json")):
        raise SystemExit("cytoseg: no model package to bundle (models/*/manifest.json)")


class BuildPy(build_py):
    def run(self) -> None:
        stage_native_files()
        super().run()


class BinaryDistribution(Distribution):
    """Marks the package as platform-specific (it holds a native library)."""

    def has_ext_modules(self) -> bool:
        return True


class PlatformWheel(bdist_wheel):
    def get_tag(self) -> tuple[str, str, str]:
        _, _, plat = super().get_tag()
        return "py3", "none", plat


setup(distclass=BinaryDistribution, cmdclass={"build_py": BuildPy, "bdist_wheel": PlatformWheel})
