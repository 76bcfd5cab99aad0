"""cytoseg.segment_folder runs the engine's batch: the same outputs as ``cytoseg segment``,
progress on the calling thread, cancel and resume; the ctypes structs match the header."""

from __future__ import annotations

import ctypes
import re
import shutil
from pathlib import Path

import pytest

import cytoseg
from cytoseg import _native

from .conftest import REPO

_C_TYPES = {
    "uint32_t": ctypes.c_uint32,
    "int32_t": ctypes.c_int32,
    "uint64_t": ctypes.c_uint64,
    "int64_t": ctypes.c_int64,
    "size_t": ctypes.c_size_t,
    "float": ctypes.c_float,
    "double": ctypes.c_double,
}


def _header_structs() -> dict[str, list[tuple[str, str]]]:
    header = REPO / "include" / "cytoseg.h"
    if not header.is_file():
        pytest.skip(f"{header} not found")
    text = re.sub(r"/\*.*?\*/", "", header.read_text(), flags=re.S)
    out = {}
    for name, body in re.findall(r"typedef struct (\w+) \{(.*?)\} \1;", text, flags=re.S):
        fields = []
        for decl in body.split(";"):
            decl = " ".join(decl.split())
            if decl:
                ctype, field = decl.rsplit(" ", 1)
                if field.startswith("*"):
                    ctype, field = ctype + " *", field.lstrip("*")
                fields.append((field, ctype))
        out[name] = fields
    return out


def test_ctypes_structs_match_the_header():
    header = _header_structs()
    for name, cls in _native.STRUCTS.items():
        assert name in header, f"{name} is not in include/cytoseg.h"
        want = header[name]
        got = cls._fields_
        assert [f for f, _ in got] == [f for f, _ in want], f"{name}: field names/order differ"
        for (field, ctype), (_, pytype) in zip(want, got):
            if ctype in _C_TYPES:
                assert pytype is _C_TYPES[ctype], f"{name}.{field}: {ctype} vs {pytype}"
            elif ctype.endswith("*"):
                assert pytype in (ctypes.c_char_p, ctypes.c_void_p), f"{name}.{field}: {ctype}"
            else:
                nested = ctype.removeprefix("struct ")
                assert pytype is _native.STRUCTS[nested], f"{name}.{field}: {ctype} vs {pytype}"
    # Every struct of the header that Python passes by layout is declared.
    passed = {"cytoseg_masks_params", "cytoseg_segment_params", "cytoseg_load_options",
              "cytoseg_calibration", "cytoseg_batch_options", "cytoseg_batch_counts",
              "cytoseg_matching_stats", "cytoseg_train_options", "cytoseg_train_progress",
              "cytoseg_train_result"}
    assert passed <= set(_native.STRUCTS)


@pytest.mark.parametrize(("prefix", "names"), [("DEVICE", _native.DEVICES), ("TILING", _native.TILINGS),
                                                  ("PRECISION", _native.PRECISIONS)])
def test_enum_names_match_the_header(prefix, names):
    header = REPO / "include" / "cytoseg.h"
    if not header.is_file():
        pytest.skip(f"{header} not found")
    values = {
        n.lower(): int(v)
        for n, v in re.findall(rf"CYTOSEG_{prefix}_(\w+) = (\d+)", header.read_text())
    }
    assert values == names


def _folder(tmp_path: Path, dsb_sample: Path) -> Path:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(cytoseg.example_image_path(), src)
    for p in sorted((dsb_sample / "images").glob("*.tif"))[:2]:
        shutil.copy(p, src)
    (src / "broken.tif").write_bytes(b"II*\x00garbage")
    return src


def _summary_without_times(path: Path) -> list[list[str]]:
    rows = [line.split(",") for line in path.read_text().splitlines()]
    return [r[:1] + r[2:10] + r[11:] for r in rows]


def test_segment_folder_equals_the_cli_and_resumes(model, cli, tmp_path, dsb_sample):
    src = _folder(tmp_path, dsb_sample)
    ref = tmp_path / "cli"
    try:
        cli("segment", str(src), "--out", str(ref), "--device", "cpu", "-q")
    except Exception:
        pass  # exit status 1: the broken file failed, as intended
    out = tmp_path / "py"
    lines: list[str] = []
    counts = model.segment_folder(
        src, out, jobs=2, progress=lambda d, n, line: lines.append(line) if line else None
    )
    assert counts == {"ok": 3, "skipped": 0, "failed": 1, "cancelled": 0}
    assert len(lines) == 4 and any("FAILED" in x and "broken.tif" in x for x in lines)
    outputs = sorted(p.name for p in ref.iterdir() if p.name.endswith(("_labels.tif", "_objects.csv")))
    assert len(outputs) == 6
    for name in outputs:
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    assert _summary_without_times(out / "summary.csv") == _summary_without_times(ref / "summary.csv")
    assert '"api": "c"' in (out / "run.json").read_text()
    assert "cytoseg.segment_folder" in (out / "run.json").read_text()
    # Again: nothing to redo.
    assert model.segment_folder(src, out)["skipped"] == 3

    # Cancelled from the progress callback, then resumed: the same outputs.
    out2 = tmp_path / "py_cancel"
    with pytest.raises(cytoseg.CancelledError):
        model.segment_folder(src, out2, jobs=1, progress=lambda d, n, line: False)
    assert (out2 / "summary.csv").is_file()
    counts = model.segment_folder(src, out2)
    assert counts["ok"] + counts["skipped"] == 3 and counts["cancelled"] == 0
    for name in outputs:
        assert (out2 / name).read_bytes() == (ref / name).read_bytes(), name


def test_segment_folder_errors(model, tmp_path):
    with pytest.raises(cytoseg.CytosegIOError, match="no/such"):
        model.segment_folder("/no/such/folder", tmp_path / "o")
    with pytest.raises(ValueError):
        model.segment_folder([], tmp_path / "o")
    with pytest.raises(ValueError):
        model.segment_folder(tmp_path, tmp_path / "o", channel=-2)
    raised = RuntimeError("from the callback")

    def boom(done, total, line):
        raise raised

    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(cytoseg.example_image_path(), src)
    with pytest.raises(RuntimeError, match="from the callback"):
        model.segment_folder(src, tmp_path / "o2", progress=boom)


def test_module_level_segment_folder(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(cytoseg.example_image_path(), src)
    counts = cytoseg.segment_folder(src, tmp_path / "o", device="cpu")
    assert counts["ok"] == 1
    assert (tmp_path / "o" / "nuclei_example_labels.tif").is_file()


def test_hostile_files_are_failed_images_not_crashes(model, tmp_path):
    """Every committed hostile file (headers claiming terabytes, truncated data) becomes a
    failed image with an error naming the file; the process and the other images carry on."""
    hostile = REPO / "tests" / "fixtures" / "hostile"
    if not hostile.is_dir():
        pytest.skip(f"{hostile} not found")
    src = tmp_path / "in"
    src.mkdir()
    files = sorted(p for p in hostile.iterdir() if p.suffix in (".tif", ".png", ".npy"))
    for p in files:
        shutil.copy(p, src)
    shutil.copy(cytoseg.example_image_path(), src)
    counts = model.segment_folder(src, tmp_path / "out")
    assert counts == {"ok": 1, "skipped": 0, "failed": len(files), "cancelled": 0}
    summary = (tmp_path / "out" / "summary.csv").read_text()
    assert "80000000000 bytes" in summary.replace(",", "")  # the 200,000² uint16 TIFF
    for p in files:
        assert p.name in summary


def test_model_defaults_come_from_the_manifest():
    import json

    d = cytoseg.api.model_defaults("nuclei")
    manifest = json.loads((cytoseg.models_dir() / "nuclei" / "manifest.json").read_text())
    assert d["flow_threshold"] == manifest["mask_defaults"]["flow_threshold"]
    assert d["cellprob_threshold"] == manifest["mask_defaults"]["cellprob_threshold"]
    assert d["diameter"] == manifest["diameter"]


def test_every_fuzz_seed_is_an_image_or_a_clear_failure(model, tmp_path):
    """The committed fuzz seeds of the file readers (valid files of every supported kind and
    hostile ones) through the batch: each image is segmented or fails with an error naming its
    file; nothing crashes the interpreter."""
    seeds = REPO / "fuzz" / "seeds"
    if not seeds.is_dir():
        pytest.skip(f"{seeds} not found")
    src = tmp_path / "in"
    files = []
    for t in ("read_tiff", "read_raster", "read_npy"):  # one sub-folder per reader
        shutil.copytree(seeds / t, src / t)
        files += list((src / t).iterdir())
    counts = model.segment_folder(src, tmp_path / "out", recursive=True)
    assert counts["ok"] + counts["failed"] == len(files) and counts["cancelled"] == 0, counts
    assert counts["ok"] > 0 and counts["failed"] > 0, counts
    rows = (tmp_path / "out" / "summary.csv").read_text().splitlines()[1:]
    for row in rows:
        if ",failed," in row:
            name = row.split(",")[0].rsplit("/", 1)[-1]
            assert row.count(name) >= 2, row  # the error names the file too
