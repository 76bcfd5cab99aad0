"""Loading libcytoseg with ctypes, the C structs of include/cytoseg.h, and the call helper.

The library is loaded with :class:`ctypes.CDLL`, which releases the GIL for the duration of
every foreign call: other Python threads keep running while the engine segments, and several
threads may call the engine at once (it is thread-safe). Progress callbacks re-acquire the GIL
while they run.

Search order for the library: ``$CYTOSEG_LIBRARY`` (a file path), then the copy bundled in
this package (``cytoseg/_lib``).
"""

from __future__ import annotations

import ctypes
import glob
import importlib.util
import os
import sys
import threading
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char_p,
    c_double,
    c_float,
    c_int32,
    c_int64,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path

from ._errors import error_for

PACKAGE_DIR = Path(__file__).resolve().parent

if sys.platform == "win32":
    LIBRARY_NAME = "cytoseg.dll"
elif sys.platform == "darwin":
    LIBRARY_NAME = "libcytoseg.dylib"
else:
    LIBRARY_NAME = "libcytoseg.so"

# cytoseg_dtype
DTYPE_U8 = 1
DTYPE_U16 = 2
DTYPE_F32 = 3
# cytoseg_volume_mode
VOLUME_MODE_DO3D = 0
VOLUME_MODE_STITCH = 1
# cytoseg_batch_options.volume_mode: z-stacks plane by plane
STACKS_PLANES = -1

#: cytoseg_device values by the names the CLI uses.
DEVICES = {"auto": 0, "cpu": 1, "cuda": 2, "tensorrt": 3, "coreml": 4, "directml": 5}

#: cytoseg_tiling values by the names the CLI uses (``--tiling``).
TILINGS = {"fast": 0, "cellpose": 1}

#: cytoseg_precision values by the names the CLI uses (``--precision``).
PRECISIONS = {"auto": 0, "fp32": 1, "int8": 2}

#: cytoseg_criterion values.
CRITERIA = {"iou": 0, "iot": 1, "iop": 2}


class MasksParams(Structure):
    """``cytoseg_masks_params``."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("niter", c_uint32),
        ("cellprob_threshold", c_float),
        ("reserved", c_uint32),
        ("flow_threshold", c_double),
        ("max_size_fraction", c_double),
        ("min_size", c_int64),
    ]


class SegmentParams(Structure):
    """``cytoseg_segment_params``."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("channel", c_int32),
        ("diameter", c_double),
        ("tile_size", c_uint32),
        ("batch_size", c_uint32),
        ("tile_overlap", c_double),
        ("masks", MasksParams),
        ("tiling", c_int32),
        ("reserved", c_int32),
        ("precision", c_int32),
    ]


class LoadOptions(Structure):
    """``cytoseg_load_options``."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("device", c_int32),
        ("threads", c_uint32),
        ("reserved", c_uint32),
        ("ort_lib", c_char_p),
    ]


class MatchingStats(Structure):
    """``cytoseg_matching_stats``."""

    _fields_ = [
        ("thresh", c_double),
        ("tp", c_uint64),
        ("fp", c_uint64),
        ("fn_", c_uint64),
        ("n_true", c_uint64),
        ("n_pred", c_uint64),
        ("precision", c_double),
        ("recall", c_double),
        ("accuracy", c_double),
        ("f1", c_double),
        ("mean_true_score", c_double),
        ("mean_matched_score", c_double),
        ("panoptic_quality", c_double),
    ]


class Calibration(Structure):
    """``cytoseg_calibration``."""

    _fields_ = [
        ("struct_size", c_size_t),
        ("pixel_width", c_double),
        ("pixel_height", c_double),
        ("unit", c_char_p),
    ]


class QcCounts(Structure):
    """``cytoseg_qc_counts``."""

    _fields_ = [
        ("images", c_size_t),
        ("groups", c_size_t),
        ("flagged", c_size_t),
        ("drifting", c_size_t),
        ("confounded", c_uint32),
    ]


class BatchOptions(Structure):
    """``cytoseg_batch_options``."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("jobs", c_uint32),
        ("max_memory_bytes", c_uint64),
        ("recursive", c_uint32),
        ("overwrite", c_uint32),
        ("objects", c_uint32),
        ("save_flows", c_uint32),
        ("run_files", c_uint32),
        ("invocation", c_char_p),
        ("volume_mode", ctypes.c_int32),
        ("volume_value", c_double),
    ]


class BatchCounts(Structure):
    """``cytoseg_batch_counts``."""

    _fields_ = [
        ("ok", c_size_t),
        ("skipped", c_size_t),
        ("failed", c_size_t),
        ("cancelled", c_size_t),
    ]


class TrainOptions(Structure):
    """``cytoseg_train_options``."""

    _fields_ = [
        ("struct_size", c_uint32),
        ("steps", c_uint32),
        ("minutes", c_double),
        ("batch_size", c_uint32),
        ("crop", c_uint32),
        ("learning_rate", c_double),
        ("weight_decay", c_double),
        ("diameter", c_double),
        ("train_diameter", c_double),
        ("seed", c_uint64),
        ("resume", c_uint32),
        ("masks_dir", c_char_p),
        ("val_images_dir", c_char_p),
        ("val_labels_dir", c_char_p),
        ("invocation", c_char_p),
        ("channels", c_uint32),
    ]


class TrainProgress(Structure):
    """``cytoseg_train_progress``."""

    _fields_ = [
        ("step", c_uint64),
        ("steps", c_uint64),
        ("loss", c_double),
        ("val_loss", c_double),
        ("learning_rate", c_double),
        ("elapsed_s", c_double),
        ("eta_s", c_double),
    ]


class TrainResult(Structure):
    """``cytoseg_train_result``."""

    _fields_ = [
        ("steps", c_uint64),
        ("final_train_loss", c_double),
        ("final_val_loss", c_double),
        ("diameter", c_double),
        ("train_images", c_uint64),
        ("val_images", c_uint64),
        ("wall_s", c_double),
    ]


#: Every ctypes struct of this module by its C name (checked against include/cytoseg.h).
STRUCTS = {
    "cytoseg_masks_params": MasksParams,
    "cytoseg_segment_params": SegmentParams,
    "cytoseg_load_options": LoadOptions,
    "cytoseg_matching_stats": MatchingStats,
    "cytoseg_calibration": Calibration,
    "cytoseg_batch_options": BatchOptions,
    "cytoseg_batch_counts": BatchCounts,
    "cytoseg_train_options": TrainOptions,
    "cytoseg_train_progress": TrainProgress,
    "cytoseg_train_result": TrainResult,
}

#: ``cytoseg_train_progress_fn``: (userdata, progress) -> non-zero cancels.
TRAIN_PROGRESS_FN = CFUNCTYPE(c_int32, c_void_p, POINTER(TrainProgress))

#: ``cytoseg_batch_progress_fn``: (userdata, done, total, line or NULL) -> non-zero cancels.
BATCH_PROGRESS_FN = CFUNCTYPE(c_int32, c_void_p, c_size_t, c_size_t, c_char_p)

#: ``cytoseg_progress_fn``: (userdata, done, total) -> 0 to continue, non-zero to cancel.
PROGRESS_FN = CFUNCTYPE(c_int32, c_void_p, c_size_t, c_size_t)

_P = c_void_p
_U32P = POINTER(c_uint32)
_F32P = POINTER(c_float)
_F64P = POINTER(c_double)

# name: (restype, argtypes); functions missing from an older library are skipped.
_SIGNATURES = {
    "cytoseg_last_error_message": (c_size_t, [ctypes.c_char_p, c_size_t]),
    "cytoseg_last_error_status": (c_int32, []),
    "cytoseg_clear_last_error": (None, []),
    "cytoseg_status_name": (c_char_p, [c_int32]),
    "cytoseg_version": (c_char_p, []),
    "cytoseg_version_number": (c_uint32, []),
    "cytoseg_list_models": (c_size_t, [ctypes.c_char_p, c_size_t]),
    "cytoseg_user_model_dir": (c_int32, [c_char_p, ctypes.c_char_p, c_size_t, POINTER(c_size_t)]),
    "cytoseg_masks_params_init": (c_int32, [POINTER(MasksParams)]),
    "cytoseg_flows_to_labels": (
        c_int32,
        [
            _F32P,
            c_size_t,
            _F32P,
            c_size_t,
            c_size_t,
            c_size_t,
            POINTER(MasksParams),
            _U32P,
            c_size_t,
            _U32P,
        ],
    ),
    "cytoseg_flows_to_labels_3d": (
        c_int32,
        [
            _F32P,
            c_size_t,
            _F32P,
            c_size_t,
            c_size_t,
            c_size_t,
            c_size_t,
            POINTER(MasksParams),
            _U32P,
            c_size_t,
            _U32P,
        ],
    ),
    "cytoseg_labels_to_flows": (c_int32, [_U32P, c_size_t, c_size_t, c_size_t, _F64P, c_size_t]),
    "cytoseg_labels_to_flows_3d": (
        c_int32,
        [_U32P, c_size_t, c_size_t, c_size_t, c_size_t, _F64P, c_size_t],
    ),
    "cytoseg_stitch_labels": (
        c_int32,
        [_U32P, c_size_t, c_size_t, c_size_t, c_size_t, c_double, ctypes.c_int64, _U32P],
    ),
    "cytoseg_evaluate_labels": (
        c_int32,
        [_U32P, _U32P, c_size_t, _F64P, c_size_t, c_int32, POINTER(MatchingStats), _F64P],
    ),
    "cytoseg_load_options_init": (c_int32, [POINTER(LoadOptions)]),
    "cytoseg_model_load": (c_int32, [c_char_p, POINTER(LoadOptions), POINTER(c_void_p)]),
    "cytoseg_model_free": (None, [_P]),
    "cytoseg_model_info": (c_int32, [_P, ctypes.c_char_p, c_size_t, POINTER(c_size_t)]),
    "cytoseg_segment_params_init": (c_int32, [_P, POINTER(SegmentParams)]),
    "cytoseg_segment_params_init_sized": (c_int32, [_P, POINTER(SegmentParams), c_size_t]),
    "cytoseg_model_segment": (
        c_int32,
        [
            _P,
            c_void_p,
            c_int32,
            c_size_t,
            c_size_t,
            c_size_t,
            c_size_t,
            POINTER(SegmentParams),
            _U32P,
            c_size_t,
            _F32P,
            c_size_t,
            _U32P,
            PROGRESS_FN,
            c_void_p,
        ],
    ),
    "cytoseg_model_segment_volume": (
        c_int32,
        [
            _P,
            c_void_p,
            c_int32,
            c_size_t,
            c_size_t,
            c_size_t,
            c_size_t,
            c_size_t,
            c_size_t,
            POINTER(SegmentParams),
            c_int32,
            c_double,
            _U32P,
            c_size_t,
            _F32P,
            c_size_t,
            _U32P,
            PROGRESS_FN,
            c_void_p,
        ],
    ),
    "cytoseg_calibration_init": (c_int32, [POINTER(Calibration)]),
    "cytoseg_measure": (
        c_int32,
        [
            _U32P,
            c_size_t,
            c_size_t,
            c_void_p,
            c_int32,
            c_size_t,
            c_size_t,
            POINTER(Calibration),
            POINTER(c_void_p),
        ],
    ),
    "cytoseg_measure_volume": (
        c_int32,
        [
            _U32P,
            c_size_t,
            c_size_t,
            c_size_t,
            c_void_p,
            c_int32,
            c_size_t,
            c_size_t,
            c_size_t,
            POINTER(Calibration),
            c_double,
            POINTER(c_void_p),
        ],
    ),
    "cytoseg_image_qc": (
        c_int32,
        [
            c_void_p,
            c_int32,
            c_size_t,
            c_size_t,
            c_size_t,
            c_size_t,
            c_int32,
            _U32P,
            c_size_t,
            _F32P,
            c_size_t,
            POINTER(Calibration),
            POINTER(c_void_p),
        ],
    ),
    "cytoseg_qc_report": (
        c_int32,
        [c_char_p, c_char_p, ctypes.c_char_p, c_size_t, POINTER(c_size_t), POINTER(QcCounts)],
    ),
    "cytoseg_classifier_train_images": (
        c_int32,
        [
            c_size_t,
            POINTER(c_void_p),
            c_int32,
            c_size_t,
            POINTER(c_size_t),
            POINTER(c_size_t),
            POINTER(_U32P),
            POINTER(c_char_p),
            POINTER(Calibration),
            POINTER(c_size_t),
            _U32P,
            _U32P,
            c_size_t,
            POINTER(c_char_p),
            c_uint32,
            c_uint64,
            c_uint32,
            c_char_p,
            _F64P,
        ],
    ),
    "cytoseg_classify_labels": (
        c_int32,
        [
            c_char_p,
            c_void_p,
            c_int32,
            c_size_t,
            c_size_t,
            c_size_t,
            c_size_t,
            _U32P,
            c_size_t,
            POINTER(Calibration),
            c_size_t,
            _U32P,
            POINTER(c_int32),
            _F64P,
            POINTER(c_size_t),
        ],
    ),
    "cytoseg_classifier_info": (c_int32, [c_char_p, ctypes.c_char_p, c_size_t, POINTER(c_size_t)]),
    "cytoseg_table_rows": (c_size_t, [_P]),
    "cytoseg_table_columns": (c_size_t, [_P]),
    "cytoseg_table_column_name": (c_char_p, [_P, c_size_t]),
    "cytoseg_table_column_unit": (c_char_p, [_P, c_size_t]),
    "cytoseg_table_column": (c_int32, [_P, c_size_t, _F64P, c_size_t]),
    "cytoseg_table_free": (None, [_P]),
    "cytoseg_batch_options_init": (c_int32, [POINTER(BatchOptions)]),
    "cytoseg_batch_options_init_sized": (c_int32, [POINTER(BatchOptions), c_size_t]),
    "cytoseg_train_options_init": (c_int32, [POINTER(TrainOptions)]),
    "cytoseg_train": (
        c_int32,
        [
            c_char_p,
            c_char_p,
            c_char_p,
            c_char_p,
            POINTER(TrainOptions),
            TRAIN_PROGRESS_FN,
            c_void_p,
            POINTER(TrainResult),
        ],
    ),
    "cytoseg_segment_folder": (
        c_int32,
        [
            _P,
            POINTER(c_char_p),
            c_size_t,
            c_char_p,
            POINTER(SegmentParams),
            POINTER(BatchOptions),
            BATCH_PROGRESS_FN,
            c_void_p,
            POINTER(BatchCounts),
        ],
    ),
}

_lib: ctypes.CDLL | None = None
_lib_lock = threading.Lock()


def library_path() -> Path:
    """The libcytoseg file this package loads (``$CYTOSEG_LIBRARY`` or the bundled copy)."""
    env = os.environ.get("CYTOSEG_LIBRARY")
    if env:
        return Path(env)
    return PACKAGE_DIR / "_lib" / LIBRARY_NAME


def lib() -> ctypes.CDLL:
    """The loaded library, with argument and result types declared (loaded on first use)."""
    global _lib
    with _lib_lock:
        if _lib is None:
            path = library_path()
            if not path.is_file():
                raise ImportError(
                    f"libcytoseg not found at {path}: reinstall the cytoseg package "
                    "(pip install bindings/python builds it), or set CYTOSEG_LIBRARY to the "
                    "library file (target/release/libcytoseg.so)"
                )
            try:
                loaded = ctypes.CDLL(str(path))
            except OSError as e:
                raise ImportError(f"cannot load libcytoseg from {path}: {e}") from e
            for name, (restype, argtypes) in _SIGNATURES.items():
                fn = getattr(loaded, name, None)
                if fn is None:
                    continue
                fn.restype = restype
                fn.argtypes = argtypes
            _lib = loaded
        return _lib


def has(name: str) -> bool:
    """Whether the loaded library exports ``name`` (newer functions may be missing)."""
    return getattr(lib(), name, None) is not None


def last_error_message() -> str:
    """The calling thread's last error message from the engine."""
    f = lib().cytoseg_last_error_message
    n = f(None, 0)
    buf = ctypes.create_string_buffer(max(int(n), 1))
    f(buf, len(buf))
    return buf.value.decode("utf-8", "replace")


def status_name(status: int) -> str:
    """The engine's English name for a status code."""
    return lib().cytoseg_status_name(status).decode("utf-8", "replace")


def check(status: int) -> None:
    """Raises the exception mapped to ``status`` (with the engine's message) unless it is OK.

    Must run on the thread that made the call: the engine's last error is per thread.
    """
    if status != 0:
        raise error_for(status, last_error_message(), status_name(status))


def find_onnxruntime() -> str | None:
    """Path of ONNX Runtime's shared library for the engine.

    ``$ORT_DYLIB_PATH`` when set; otherwise the library inside the ``onnxruntime`` (or
    ``onnxruntime-gpu``) pip package, found without importing it; ``None`` if neither exists
    (the engine then searches beside itself and python3's package, and reports where it looked).
    """
    env = os.environ.get("ORT_DYLIB_PATH")
    if env:
        return env
    try:
        spec = importlib.util.find_spec("onnxruntime")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None
    if sys.platform == "win32":
        patterns = ["onnxruntime.dll"]
    elif sys.platform == "darwin":
        patterns = ["libonnxruntime.*.dylib", "libonnxruntime.dylib"]
    else:
        patterns = ["libonnxruntime.so.*", "libonnxruntime.so"]
    for location in spec.submodule_search_locations:
        capi = Path(location) / "capi"
        for pattern in patterns:
            hits = sorted(glob.glob(str(capi / pattern)))
            if hits:
                return hits[-1]
    return None
