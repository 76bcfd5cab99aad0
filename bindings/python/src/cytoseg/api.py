"""The Python API of cytoseg: models, flows ↔ labels, evaluation, measurements and the object
classifier.

Arrays cross into the engine without copies when they already have a supported layout
(uint8, uint16 or float32 images whose pixels are contiguous within each row: C-contiguous
arrays and row crops of them; uint32 labels; float32 flows). Other arrays are converted once.
Outputs are numpy arrays allocated here and filled by the engine.

Engine calls release the GIL (ctypes.CDLL), so threads run them in parallel; a :class:`Model`
may be shared by several threads.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from ctypes import byref, c_char_p, c_double, c_float, c_uint32, c_void_p
from pathlib import Path
from typing import Any

import numpy as np

from . import _native
from ._errors import InvalidArgumentError
from ._version import __version__

#: Name of the model used when none is given.
DEFAULT_MODEL = "nuclei"

_F32P = ctypes.POINTER(c_float)
_F64P = ctypes.POINTER(c_double)
_U32P = ctypes.POINTER(c_uint32)

_NATIVE_DTYPES = {
    np.dtype(np.uint8): _native.DTYPE_U8,
    np.dtype(np.uint16): _native.DTYPE_U16,
    np.dtype(np.float32): _native.DTYPE_F32,
}


def models_dir() -> Path:
    """The folder of the model packages bundled with this Python package."""
    return _native.PACKAGE_DIR / "models"


def bundled_models() -> list[str]:
    """Names of the bundled model packages (folders holding a manifest.json)."""
    d = models_dir()
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir() if (p / "manifest.json").is_file())


def list_models() -> dict[str, Path]:
    """Every model package offered by name: the bundled ones first, then those the engine finds
    (``$CYTOSEG_MODELS``, then the user's models folder, where clones trained from napari, Fiji
    or ``cytoseg train --name`` are saved), as ``{name: folder}``. The default model
    (:data:`DEFAULT_MODEL`) comes first, so that lists built from this start on it."""
    bundled = sorted(bundled_models(), key=lambda n: (n != DEFAULT_MODEL, n))
    out = {name: models_dir() / name for name in bundled}
    f = _native.lib().cytoseg_list_models
    buf = ctypes.create_string_buffer(max(int(f(None, 0)), 1))
    f(buf, len(buf))
    for line in os.fsdecode(buf.value).splitlines():
        name, _, folder = line.partition("\t")
        if name and folder:
            out.setdefault(name, Path(folder))
    return out


def user_model_dir(name: str | None = None) -> Path:
    """The user's models folder (``name`` None), or the folder a new clone called ``name`` is
    saved to, which :func:`train` accepts as ``out``. The folder is shared with the command line
    and Fiji; ``$CYTOSEG_USER_MODELS`` overrides it.

    Raises:
        InvalidArgumentError: the name is not a plain folder name (letters, digits, ``-``,
            ``_``, ``.``) or a model of that name exists already.
    """
    if name and name in bundled_models():
        raise InvalidArgumentError(
            f"a model named {name!r} exists already ({models_dir() / name}): choose another name"
        )
    f = _native.lib().cytoseg_user_model_dir
    encoded = name.encode() if name else None
    needed = ctypes.c_size_t(0)
    _native.check(f(encoded, None, 0, byref(needed)))
    buf = ctypes.create_string_buffer(max(int(needed.value), 1))
    _native.check(f(encoded, buf, len(buf), byref(needed)))
    return Path(os.fsdecode(buf.value))


def example_image_path() -> Path:
    """The bundled example image (``nuclei_example.tif``, 320×320 uint16 nuclei)."""
    return _native.PACKAGE_DIR / "data" / "nuclei_example.tif"


def engine_version() -> str:
    """Version of the loaded libcytoseg (equal to ``cytoseg.__version__`` in a built wheel)."""
    return _native.lib().cytoseg_version().decode()


def _resolve_model(name_or_path: str | os.PathLike[str] | None) -> str:
    """A bundled name becomes the bundled folder; paths and other names go to the engine as
    given (it also searches ``$CYTOSEG_MODELS``)."""
    if name_or_path is None:
        name_or_path = DEFAULT_MODEL
    s = os.fspath(name_or_path)
    if not os.path.exists(s) and (models_dir() / s / "manifest.json").is_file():
        return str(models_dir() / s)
    return s


def model_defaults(name_or_path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """A model package's defaults from its manifest, without loading it: ``diameter`` and the
    ``mask_defaults`` (``cellprob_threshold``, ``flow_threshold``, ``niter``, ``min_size``,
    ``max_size_fraction``). Widgets start from these, not from copies of Cellpose's."""
    folder = Path(_resolve_model(name_or_path))
    manifest = json.loads((folder / "manifest.json").read_text())
    return {"diameter": manifest["diameter"], **manifest["mask_defaults"]}


def _one_channel(channels: int | Sequence[int] | None, c: int) -> int:
    """The engine's channel number for ``channels`` of an image with ``c`` channels (-1 = the
    mean of all)."""
    if channels is None:
        return -1
    seq = [channels] if isinstance(channels, (int, np.integer)) else list(channels)
    if len(seq) != 1:
        raise ValueError(f"channels must name one image channel for this model, got {channels!r}")
    channel = int(seq[0])
    if not 0 <= channel < c:
        raise ValueError(f"channel {channel} does not exist: the image has {c} channel(s)")
    return channel


def _tile_progress(progress: Callable[[int, int], Any] | None) -> tuple[Any, list[BaseException]]:
    """A C progress callback for ``progress(done, total)`` (``False`` cancels) and the list
    that receives an exception raised in it (to re-raise after the engine returns)."""
    raised: list[BaseException] = []

    def trampoline(_userdata: Any, done: int, total: int) -> int:
        try:
            return 1 if progress(int(done), int(total)) is False else 0
        except BaseException as e:  # re-raised after the engine returns
            raised.append(e)
            return 1

    cb = _native.PROGRESS_FN(trampoline) if progress is not None else _native.PROGRESS_FN()
    return cb, raised


def _image_for_engine(image: Any, what: str = "image") -> tuple[np.ndarray, int, int]:
    """Checks an image and returns ``(array, dtype code, row stride in bytes)``.

    Accepts (H, W) or (H, W, C). No copy when the dtype is native and each row's pixels are
    contiguous (any positive row stride); otherwise one conversion to a C-contiguous array.
    """
    arr = np.asarray(image)
    if arr.ndim not in (2, 3):
        raise ValueError(
            f"{what} must be 2-D (height, width) or 3-D (height, width, channels), "
            f"got shape {arr.shape}"
        )
    if arr.dtype.kind not in "uif" or arr.dtype.itemsize > 8:
        raise TypeError(
            f"{what} must hold real numbers (uint8, uint16 or float32 without a copy; other "
            f"integer and float types are converted to float32), got dtype {arr.dtype}"
        )
    if arr.dtype.newbyteorder("=") not in _NATIVE_DTYPES or not arr.dtype.isnative:
        target = arr.dtype.newbyteorder("=")
        arr = arr.astype(target if target in _NATIVE_DTYPES else np.float32)
    h, w = arr.shape[:2]
    c = arr.shape[2] if arr.ndim == 3 else 1
    item = arr.itemsize
    pixel_contiguous = arr.strides[1] == c * item and (arr.ndim == 2 or arr.strides[2] == item)
    row = arr.strides[0]
    if not (pixel_contiguous and row >= w * c * item and row % item == 0) or h * w == 0:
        arr = np.ascontiguousarray(arr)
        row = arr.strides[0] if arr.size else w * c * item
    return arr, _NATIVE_DTYPES[arr.dtype], row


def _labels_for_engine(labels: Any, what: str) -> np.ndarray:
    """A C-contiguous uint32 copy or view of an integer label array (values 0..2^32-1)."""
    arr = np.asarray(labels)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint32)
    if arr.dtype.kind not in "ui":
        raise TypeError(f"{what} must be an integer label image, got dtype {arr.dtype}")
    if arr.dtype != np.uint32 and arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 0xFFFFFFFF:
            raise ValueError(f"{what} values must lie in 0..4294967295, found {lo}..{hi}")
    return np.ascontiguousarray(arr, dtype=np.uint32)


def _image_and_labels(image: Any, labels: Any) -> tuple[np.ndarray, int, int, int, np.ndarray]:
    """An image and its label image for the engine: ``(image, dtype code, row stride in bytes,
    channels, labels)``, the shapes checked."""
    img, dtype, row = _image_for_engine(image, "image")
    lab = _labels_for_engine(labels, "labels")
    if lab.shape != img.shape[:2]:
        raise ValueError(f"labels shape {lab.shape} does not match image shape {img.shape[:2]}")
    return img, dtype, row, img.shape[2] if img.ndim == 3 else 1, lab


def _ptr(arr: np.ndarray, ctype: Any) -> Any:
    return arr.ctypes.data_as(ctypes.POINTER(ctype))


class Model:
    """A segmentation model loaded into the engine (an ONNX Runtime session).

    Args:
        name_or_path: a bundled model name (:func:`bundled_models`, default ``"nuclei"``) or the
            folder of a model package (``manifest.json`` + ONNX file).
        device: ``"auto"`` (first available GPU provider, else CPU), ``"cpu"``, ``"cuda"``,
            ``"tensorrt"``, ``"coreml"`` or ``"directml"``. Naming a provider the installed ONNX
            Runtime lacks raises :class:`OnnxRuntimeError` instead of running on the CPU.
        threads: ONNX Runtime intra-op threads; 0 = one per core.
        ort_lib: path of ONNX Runtime's shared library; by default ``$ORT_DYLIB_PATH`` or the
            one inside the installed ``onnxruntime`` pip package. One ONNX Runtime is loaded per
            process: the first successful load wins.

    Use as a context manager or call :meth:`close` to free the engine's memory at a known
    point. One model may be used by several threads at once.
    """

    def __init__(
        self,
        name_or_path: str | os.PathLike[str] | None = None,
        device: str = "auto",
        threads: int = 0,
        ort_lib: str | os.PathLike[str] | None = None,
    ):
        self._ptr: int | None = None
        self._lock = threading.Condition()
        self._busy = 0
        self._local = threading.local()  # calls running on this thread (close() refuses then)
        lib = _native.lib()
        dev = str(device).lower()
        if dev not in _native.DEVICES:
            raise ValueError(
                f"unknown device {device!r}: choose one of {', '.join(_native.DEVICES)}"
            )
        if int(threads) < 0:
            raise ValueError(f"threads must be >= 0, got {threads}")
        opts = _native.LoadOptions()
        _native.check(lib.cytoseg_load_options_init(byref(opts)))
        _check_struct(opts, "cytoseg_load_options")
        opts.device = _native.DEVICES[dev]
        opts.threads = int(threads)
        ort = os.fspath(ort_lib) if ort_lib is not None else _native.find_onnxruntime()
        opts.ort_lib = os.fsencode(ort) if ort else None
        self.path = _resolve_model(name_or_path)
        out = c_void_p()
        _native.check(lib.cytoseg_model_load(os.fsencode(self.path), byref(opts), byref(out)))
        self._ptr = out.value
        self.info: dict[str, Any] = self._read_info()
        self.name: str = self.info.get("name", str(name_or_path))
        self.device: str = self.info.get("device", dev)
        self.diameter: float | None = self.info.get("diameter")
        self.channels: int | None = self.info.get("channels")

    def _read_info(self) -> dict[str, Any]:
        lib = _native.lib()
        needed = ctypes.c_size_t()
        _native.check(lib.cytoseg_model_info(self._ptr, None, 0, byref(needed)))
        buf = ctypes.create_string_buffer(needed.value)
        _native.check(lib.cytoseg_model_info(self._ptr, buf, len(buf), None))
        return json.loads(buf.value.decode("utf-8"))

    # lifecycle -------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._ptr is None

    def close(self) -> None:
        """Frees the engine's model. Waits for calls running in other threads to finish;
        later calls raise ``ValueError``. Closing twice is a no-op. Raises ``RuntimeError``
        when called from inside a call on this model on the same thread (e.g. from its progress
        callback), which could never finish waiting for itself."""
        if getattr(self._local, "depth", 0):
            raise RuntimeError(
                "Model.close() was called from inside a call on this model (e.g. its progress "
                "callback); return False from the callback to cancel, then close"
            )
        with self._lock:
            while self._busy:
                self._lock.wait()
            ptr, self._ptr = self._ptr, None
        if ptr is not None:
            _native.lib().cytoseg_model_free(ptr)

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if getattr(self, "_ptr", None) is not None and not self._busy:
                self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"device={self.device!r}"
        return f"<cytoseg.Model {getattr(self, 'name', '?')!r} {state}>"

    def _acquire(self) -> int:
        with self._lock:
            if self._ptr is None:
                raise ValueError("the model is closed")
            self._busy += 1
            self._local.depth = getattr(self._local, "depth", 0) + 1
            return self._ptr

    def _release(self) -> None:
        self._local.depth -= 1
        with self._lock:
            self._busy -= 1
            self._lock.notify_all()

    # segmentation ----------------------------------------------------------------------
    def segment(
        self,
        image: Any,
        diameter: float | None = None,
        channels: int | Sequence[int] | None = None,
        cellprob_threshold: float | None = None,
        flow_threshold: float | None = None,
        tile_size: int | None = None,
        tile_overlap: float | None = None,
        batch_size: int | None = None,
        tiling: str = "fast",
        precision: str = "auto",
        niter: int | None = None,
        min_size: int | None = None,
        max_size_fraction: float | None = None,
        return_flows: bool = False,
        progress: Callable[[int, int], Any] | None = None,
        channel_axis: int | None = None,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Segments one 2-D image into instance labels.

        Args:
            image: (H, W) or (H, W, C) array (see ``channel_axis``); uint8, uint16 and float32
                are passed without a copy, other real types are converted to float32.
            diameter: typical object diameter in pixels; None uses the model's (no resizing).
            channels: the image channel to segment (an int or a one-element sequence);
                None averages all channels.
            cellprob_threshold, flow_threshold, niter, min_size, max_size_fraction: flows →
                labels parameters (Cellpose's names; None keeps the model's defaults:
                0.0, 0.4, 200 scaled by the resize factor, 15, 0.4).
            tile_size: tile edge in pixels (multiple of 16); None uses the default (the
                model's with ``tiling="cellpose"``, the largest tile edge 1024 with "fast").
            tile_overlap: fractional tile overlap; None uses the default (the model's with
                ``tiling="cellpose"``, 0.0625 of the largest tile edge with "fast").
            batch_size: tiles per network call; None keeps the default (8).
            tiling: "fast" (default: whole images up to 1024² in one piece, larger ones in few
                large tiles; 1.3-2× faster in 2-D) or "cellpose" (Cellpose's 256² tiles with 10%
                overlap: labels identical to Cellpose's pipeline).
            precision: "auto" (default: the model's int8 variant on the CPU with fast tiling,
                not in do_3D, when its validated AP@0.5 is within 0.005 of float32's, else
                float32), "fp32" (exact: with ``tiling="cellpose"``, Cellpose's labels) or
                "int8" (the model's int8 variant; :attr:`Model.info` ``["precisions"]`` lists
                what it has).
            return_flows: also return the network output at image size, float32 (3, H, W):
                dY, dX, cellprob.
            progress: ``progress(done, total)`` called after each batch of tiles (from the
                calling thread); returning ``False`` cancels (:class:`CancelledError`), and an
                exception raised in it cancels the run and is re-raised.
            channel_axis: the axis holding channels when it is not the last one.

        Returns:
            uint32 labels (H, W), 0 = background and objects 1..n; with ``return_flows``,
            ``(labels, flows)``.
        """
        arr = np.asarray(image)
        if channel_axis is not None:
            if arr.ndim != 3:
                raise ValueError(f"channel_axis needs a 3-D image, got shape {arr.shape}")
            arr = np.moveaxis(arr, channel_axis, -1)
        arr, dtype, row = _image_for_engine(arr)
        h, w = arr.shape[:2]
        c = arr.shape[2] if arr.ndim == 3 else 1
        channel = _one_channel(channels, c)
        lib = _native.lib()
        ptr = self._acquire()
        try:
            p = _segment_params(
                ptr,
                channel,
                diameter,
                tile_size,
                tile_overlap,
                batch_size,
                tiling,
                precision,
                cellprob_threshold,
                flow_threshold,
                niter,
                min_size,
                max_size_fraction,
            )
            labels = np.empty((h, w), dtype=np.uint32)
            flows = np.empty((3, h, w), dtype=np.float32) if return_flows else None
            cb, raised = _tile_progress(progress)
            status = lib.cytoseg_model_segment(
                ptr,
                arr.ctypes.data_as(c_void_p),
                dtype,
                w,
                h,
                c,
                row,
                byref(p),
                _ptr(labels, c_uint32),
                labels.size,
                _ptr(flows, c_float) if flows is not None else None,
                flows.size if flows is not None else 0,
                None,
                cb,
                None,
            )
            if raised:
                raise raised[0]
            _native.check(status)
        finally:
            self._release()
        return (labels, flows) if flows is not None else labels


    def segment_3d(
        self,
        stack: Any,
        *,
        stitch_threshold: float | None = None,
        anisotropy: float | None = None,
        diameter: float | None = None,
        channels: int | Sequence[int] | None = None,
        cellprob_threshold: float | None = None,
        flow_threshold: float | None = None,
        tile_size: int | None = None,
        tile_overlap: float | None = None,
        batch_size: int | None = None,
        tiling: str = "fast",
        precision: str = "auto",
        niter: int | None = None,
        min_size: int | None = None,
        max_size_fraction: float | None = None,
        return_flows: bool = False,
        progress: Callable[[int, int], Any] | None = None,
        channel_axis: int | None = None,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Segments a z-stack into 3-D objects as Cellpose 4 does (the stack normalized as one
        volume): with ``stitch_threshold`` None, Cellpose's ``do_3D`` (the network on the YX,
        ZY and ZX planes, 3-D flows followed to labels); with ``stitch_threshold`` T, its
        stitching mode (2-D labels per plane linked across z by IoU >= T). With
        ``tiling="cellpose"``, labels equal cellpose 4.2.1.1's around the same network.

        Args:
            stack: (Z, H, W) or (Z, H, W, C) array (see ``channel_axis``), at least 2 planes.
            stitch_threshold: IoU linking masks of consecutive planes (e.g. 0.25), or None for
                3-D flows.
            anisotropy: z spacing over pixel size for 3-D flows (e.g. 2.0 when planes are twice
                as far apart as pixels); None means 1. Not used when stitching.
            diameter, channels, cellprob_threshold, ...: as :meth:`segment` (``min_size`` counts
                voxels).
            return_flows: also return the network output: (4, Z, H, W) dZ, dY, dX, cellprob
                for 3-D flows, (Z, 3, H, W) per-plane dY, dX, cellprob when stitching.
            progress: ``progress(done, total)`` over the tiles of all planes; ``False`` cancels.
            channel_axis: the axis holding channels when it is not the last one.

        Returns:
            uint32 labels (Z, H, W), objects 1..n; with ``return_flows``, ``(labels, flows)``.
        """
        arr = np.asarray(stack)
        if channel_axis is not None:
            if arr.ndim != 4:
                raise ValueError(f"channel_axis needs a 4-D stack, got shape {arr.shape}")
            arr = np.moveaxis(arr, channel_axis, -1)
        if arr.ndim not in (3, 4):
            raise ValueError(
                f"stack must be (planes, height, width) or (planes, height, width, channels), "
                f"got shape {arr.shape}"
            )
        if arr.shape[0] == 0:
            raise ValueError("the stack has no planes")
        plane0, dtype, _ = _image_for_engine(arr[0], "each plane")
        arr = np.ascontiguousarray(arr.astype(plane0.dtype, copy=False))
        d, h, w = arr.shape[:3]
        c = arr.shape[3] if arr.ndim == 4 else 1
        row = w * c * arr.itemsize
        if stitch_threshold is None:
            mode, value = _native.VOLUME_MODE_DO3D, 0.0 if anisotropy is None else float(anisotropy)
            nflows = 4
        else:
            mode, value = _native.VOLUME_MODE_STITCH, float(stitch_threshold)
            nflows = 3
        channel = _one_channel(channels, c)
        lib = _native.lib()
        ptr = self._acquire()
        try:
            p = _segment_params(
                ptr,
                channel,
                diameter,
                tile_size,
                tile_overlap,
                batch_size,
                tiling,
                precision,
                cellprob_threshold,
                flow_threshold,
                niter,
                min_size,
                max_size_fraction,
            )
            labels = np.empty((d, h, w), dtype=np.uint32)
            shape = (4, d, h, w) if nflows == 4 else (d, 3, h, w)
            flows = np.empty(shape, dtype=np.float32) if return_flows else None
            cb, raised = _tile_progress(progress)
            status = lib.cytoseg_model_segment_volume(
                ptr,
                arr.ctypes.data_as(c_void_p),
                dtype,
                w,
                h,
                d,
                c,
                row,
                h * row,
                byref(p),
                mode,
                value,
                _ptr(labels, c_uint32),
                labels.size,
                _ptr(flows, c_float) if flows is not None else None,
                flows.size if flows is not None else 0,
                None,
                cb,
                None,
            )
            if raised:
                raise raised[0]
            _native.check(status)
        finally:
            self._release()
        return (labels, flows) if flows is not None else labels

    def segment_folder(
        self,
        inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        out: str | os.PathLike[str],
        *,
        recursive: bool = False,
        overwrite: bool = False,
        jobs: int = 0,
        max_memory: int = 0,
        objects: bool = True,
        save_flows: bool = False,
        run_files: bool = True,
        do_3d: bool = False,
        anisotropy: float | None = None,
        stitch_threshold: float | None = None,
        progress: Callable[[int, int, str | None], Any] | None = None,
        diameter: float | None = None,
        channel: int | None = None,
        cellprob_threshold: float | None = None,
        flow_threshold: float | None = None,
        tile_size: int | None = None,
        tile_overlap: float | None = None,
        batch_size: int | None = None,
        tiling: str = "fast",
        precision: str = "auto",
        niter: int | None = None,
        min_size: int | None = None,
        max_size_fraction: float | None = None,
    ) -> dict[str, int]:
        """Segments files, folders and glob patterns into ``out`` with the engine's batch run,
        exactly as the ``cytoseg segment`` command (and Fiji's Segment Folder): per image
        ``<stem>_labels.tif`` and ``<stem>_objects.csv``, per run ``summary.csv`` and
        ``run.json``. Images finished by an earlier run with the same settings are skipped, so a
        cancelled or interrupted run resumes; an image that fails is reported in
        ``summary.csv`` and the others go on.

        Args:
            inputs: a path or glob pattern, or a list of them (files, folders, patterns).
            out: output folder (created if missing).
            recursive: also take images from sub-folders (outputs mirror them).
            overwrite: redo finished images and replace existing outputs.
            jobs: images at once (0 = the number of cores, at most 4).
            max_memory: bytes the images in flight may use together (0 = 60% of the
                available memory).
            objects: write the per-object tables.
            save_flows: also write ``<stem>_flows.npy``.
            run_files: write ``summary.csv`` and ``run.json`` (off for a worker of a
                distributed run doing part of a folder; a last call over all inputs, which
                skips the finished images, then writes the summary of the whole).
            do_3d: z-stacks become 3-D objects as Cellpose's ``do_3D`` (``cytoseg segment
                --do-3d``): 3-D label stacks and objects tables; 2-D images then fail.
            anisotropy: with ``do_3d``, z spacing / pixel size; None takes each file's z
                spacing (1 when it has none).
            stitch_threshold: z-stacks become 3-D objects by Cellpose's stitching of per-plane
                masks at this IoU (``--stitch-threshold``); not with ``do_3d``. Neither: stacks
                are segmented plane by plane.
            progress: ``progress(done, total, line)`` on the calling thread after each image
                (``line`` is its one-line report), once before any image starts and about
                every 100 ms in between (``line`` None); returning ``False`` cancels (:class:`CancelledError`, after
                ``summary.csv`` and ``run.json`` are written); an exception raised in it
                cancels and is re-raised.
            diameter, channel, cellprob_threshold, ...: as :meth:`segment` (``channel`` is
                the one image channel to segment, None averages all).

        Returns:
            images by status: ``{"ok", "skipped", "failed", "cancelled"}``.
        """
        if isinstance(inputs, (str, os.PathLike)):
            inputs = [inputs]
        paths = [os.fsencode(os.fspath(i)) for i in inputs]
        if not paths:
            raise ValueError("inputs is empty: give at least one file, folder or glob pattern")
        if channel is not None and int(channel) < 0:
            raise ValueError(f"channel must be >= 0 (or None for the mean), got {channel}")
        if jobs < 0 or max_memory < 0:
            raise ValueError("jobs and max_memory must be >= 0 (0 = automatic)")
        if do_3d and stitch_threshold is not None:
            raise ValueError("do_3d and stitch_threshold are two ways to make 3-D objects: pick one")
        if anisotropy is not None and not do_3d:
            raise ValueError("anisotropy is used with do_3d=True only")
        if do_3d:
            volume_mode = _native.VOLUME_MODE_DO3D
            volume_value = 0.0 if anisotropy is None else float(anisotropy)
        elif stitch_threshold is not None:
            volume_mode, volume_value = _native.VOLUME_MODE_STITCH, float(stitch_threshold)
        else:
            volume_mode, volume_value = _native.STACKS_PLANES, 0.0
        lib = _native.lib()
        ptr = self._acquire()
        try:
            p = _segment_params(
                ptr,
                -1 if channel is None else int(channel),
                diameter,
                tile_size,
                tile_overlap,
                batch_size,
                tiling,
                precision,
                cellprob_threshold,
                flow_threshold,
                niter,
                min_size,
                max_size_fraction,
            )
            o = _native.BatchOptions()
            _native.check(lib.cytoseg_batch_options_init_sized(byref(o), ctypes.sizeof(o)))
            _check_struct(o, "cytoseg_batch_options")
            o.volume_mode = volume_mode
            o.volume_value = volume_value
            o.jobs = int(jobs)
            o.max_memory_bytes = int(max_memory)
            o.recursive = int(bool(recursive))
            o.overwrite = int(bool(overwrite))
            o.objects = int(bool(objects))
            o.save_flows = int(bool(save_flows))
            o.run_files = int(bool(run_files))
            o.invocation = f"python cytoseg {__version__}: cytoseg.segment_folder".encode()
            arr = (c_char_p * len(paths))(*paths)
            counts = _native.BatchCounts()
            raised: list[BaseException] = []

            def trampoline(_userdata: Any, done: int, total: int, line: bytes | None) -> int:
                try:
                    text = line.decode("utf-8", "replace") if line is not None else None
                    return 1 if progress(int(done), int(total), text) is False else 0
                except BaseException as e:  # re-raised after the engine returns
                    raised.append(e)
                    return 1

            cb = (
                _native.BATCH_PROGRESS_FN(trampoline)
                if progress is not None
                else _native.BATCH_PROGRESS_FN()
            )
            status = lib.cytoseg_segment_folder(
                ptr,
                arr,
                len(paths),
                os.fsencode(os.fspath(out)),
                byref(p),
                byref(o),
                cb,
                None,
                byref(counts),
            )
            if raised:
                raise raised[0]
            _native.check(status)
        finally:
            self._release()
        return {
            "ok": counts.ok,
            "skipped": counts.skipped,
            "failed": counts.failed,
            "cancelled": counts.cancelled,
        }


def segment_folder(
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    model: str | os.PathLike[str] | None = None,
    device: str = "auto",
    **kwargs: Any,
) -> dict[str, int]:
    """Loads ``model`` (default: the bundled ``nuclei``) and runs :meth:`Model.segment_folder`.

    >>> import cytoseg
    >>> cytoseg.segment_folder("plate1/", "results/", progress=lambda d, n, line: print(line))
    """
    with Model(model, device=device) as m:
        return m.segment_folder(inputs, out, **kwargs)


def train(
    from_model: str | os.PathLike[str] | None,
    images: str | os.PathLike[str],
    labels: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    name: str | None = None,
    masks: str | os.PathLike[str] | None = None,
    val_images: str | os.PathLike[str] | None = None,
    val_labels: str | os.PathLike[str] | None = None,
    steps: int | None = None,
    minutes: float | None = None,
    batch_size: int | None = None,
    crop: int | None = None,
    learning_rate: float | None = None,
    weight_decay: float | None = None,
    diameter: float | None = None,
    train_diameter: float | None = None,
    channels: int | None = None,
    seed: int | None = None,
    resume: bool = False,
    progress: Callable[[dict[str, float]], Any] | None = None,
) -> dict[str, float]:
    """Clones a model and fine-tunes it on annotated images into a new model package ``out``,
    with the engine's native trainer (the one ``cytoseg train`` runs; no torch): ``model.onnx``
    with the trained weights, ``manifest.json`` with the lineage, ``MODEL_CARD.md``,
    ``loss.csv`` and ``loss.png``. The parent is only read. Options left at None take the
    engine's defaults (those of ``cytoseg train``).

    Args:
        from_model: the parent, a bundled name or a package folder (None: ``nuclei``).
        images, labels: folders of training images and their label images, paired by file stem.
        out: the new package's folder (must not hold a package).
        name: instead of ``out``, save the clone under this new name in the user's models
            folder (:func:`user_model_dir`), where every face of cytoseg offers it by name.
        masks: folder of annotated-region masks (pixels outside are ignored by the loss).
        val_images, val_labels: validation folders (default: one image in ten held out when
            there are at least ten).
        steps, minutes, batch_size, crop, learning_rate, weight_decay, seed: the schedule.
        diameter: typical object diameter in the training images (default: measured).
        train_diameter: the diameter the clone's network works at (default: the objects'
            diameter, at least the parent's and at most 30, Cellpose's cell scale).
        channels: input channels of the clone (default: 3 when the parent takes one channel
            and every training image is colour (RGB), else the parent's; a one-channel parent
            is widened for colour images).
        resume: continue from the checkpoint in ``out`` (after a cancel).
        progress: called after every step with a dict (``step``, ``steps``, ``loss``,
            ``val_loss`` (NaN when none yet), ``learning_rate``, ``elapsed_s``, ``eta_s``);
            returning False cancels: a checkpoint is saved and :class:`CancelledError` raised.

    Returns:
        ``steps``, ``final_train_loss``, ``final_val_loss`` (NaN without validation),
        ``diameter``, ``train_images``, ``val_images``, ``wall_s``.

    >>> import cytoseg
    >>> cytoseg.train("nuclei", "mine/images", "mine/labels", "models/mycells",
    ...               progress=lambda p: print(p["step"], p["loss"]))
    """
    if (val_images is None) != (val_labels is None):
        raise ValueError("val_images and val_labels go together")
    if (out is None) == (name is None):
        raise ValueError("give out (a folder) or name (a new model in your models folder)")
    if out is None:
        out = user_model_dir(name)
    lib = _native.lib()
    o = _native.TrainOptions()
    _native.check(lib.cytoseg_train_options_init(byref(o)))
    _check_struct(o, "cytoseg_train_options")
    counts = {"steps": steps, "batch_size": batch_size, "crop": crop, "channels": channels,
              "seed": seed}
    for name, value in counts.items():
        if value is not None:
            if int(value) < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
            setattr(o, name, int(value))
    reals = {"minutes": minutes, "learning_rate": learning_rate, "weight_decay": weight_decay,
             "diameter": diameter, "train_diameter": train_diameter}
    for name, value in reals.items():
        if value is not None:
            setattr(o, name, float(value))
    o.resume = int(bool(resume))
    # keep the encoded paths alive during the call
    keep = {
        k: (os.fsencode(os.fspath(v)) if v is not None else None)
        for k, v in (("masks_dir", masks), ("val_images_dir", val_images),
                     ("val_labels_dir", val_labels))
    }
    for k, v in keep.items():
        setattr(o, k, v)
    o.invocation = f"python cytoseg {__version__}: cytoseg.train".encode()
    result = _native.TrainResult()
    raised: list[BaseException] = []

    def trampoline(_userdata: Any, p: Any) -> int:
        try:
            q = p.contents
            info = {
                "step": int(q.step),
                "steps": int(q.steps),
                "loss": float(q.loss),
                "val_loss": float(q.val_loss),
                "learning_rate": float(q.learning_rate),
                "elapsed_s": float(q.elapsed_s),
                "eta_s": float(q.eta_s),
            }
            return 1 if progress(info) is False else 0
        except BaseException as e:  # re-raised after the engine returns
            raised.append(e)
            return 1

    cb = _native.TRAIN_PROGRESS_FN(trampoline) if progress is not None else _native.TRAIN_PROGRESS_FN()
    status = lib.cytoseg_train(
        os.fsencode(_resolve_model(from_model)),
        os.fsencode(os.fspath(images)),
        os.fsencode(os.fspath(labels)),
        os.fsencode(os.fspath(out)),
        byref(o),
        cb,
        None,
        byref(result),
    )
    if raised:
        raise raised[0]
    _native.check(status)
    return {
        "steps": int(result.steps),
        "final_train_loss": float(result.final_train_loss),
        "final_val_loss": float(result.final_val_loss),
        "diameter": float(result.diameter),
        "train_images": int(result.train_images),
        "val_images": int(result.val_images),
        "wall_s": float(result.wall_s),
    }


def _segment_params(
    ptr: int,
    channel: int,
    diameter: float | None,
    tile_size: int | None,
    tile_overlap: float | None,
    batch_size: int | None,
    tiling: str,
    precision: str,
    cellprob_threshold: float | None,
    flow_threshold: float | None,
    niter: int | None,
    min_size: int | None,
    max_size_fraction: float | None,
) -> _native.SegmentParams:
    """The model's defaults (``cytoseg_segment_params_init_sized``) with these overrides: the one
    conversion of keyword arguments to the engine's parameters."""
    lib = _native.lib()
    p = _native.SegmentParams()
    _native.check(lib.cytoseg_segment_params_init_sized(ptr, byref(p), ctypes.sizeof(p)))
    _check_struct(p, "cytoseg_segment_params")
    if tiling not in _native.TILINGS:
        raise ValueError(
            f"unknown tiling {tiling!r}: use 'fast' (default) or 'cellpose' (Cellpose's tiles, "
            "for labels identical to Cellpose's)"
        )
    p.tiling = _native.TILINGS[tiling]
    if precision not in _native.PRECISIONS:
        raise ValueError(
            f"unknown precision {precision!r}: use 'auto' (default), 'fp32' (exact) or 'int8'"
        )
    p.precision = _native.PRECISIONS[precision]
    p.channel = channel
    if diameter is not None:
        if not (diameter > 0 and math.isfinite(diameter)):
            raise ValueError(f"diameter must be a positive number of pixels, got {diameter}")
        p.diameter = float(diameter)
    if tile_size is not None:
        p.tile_size = int(tile_size)
    if tile_overlap is not None:
        p.tile_overlap = float(tile_overlap)
    if batch_size is not None:
        p.batch_size = int(batch_size)
    _set_masks(p.masks, cellprob_threshold, flow_threshold, niter, min_size, max_size_fraction)
    return p


def _check_struct(s: ctypes.Structure, name: str) -> None:
    """The engine filled ``struct_size``: it must match this binding's layout."""
    if s.struct_size != ctypes.sizeof(s):
        raise ImportError(
            f"{name} is {s.struct_size} bytes in libcytoseg but {ctypes.sizeof(s)} in the "
            "Python binding: the package and library versions do not match"
        )


def _set_masks(
    m: _native.MasksParams,
    cellprob_threshold: float | None,
    flow_threshold: float | None,
    niter: int | None,
    min_size: int | None,
    max_size_fraction: float | None,
) -> None:
    if cellprob_threshold is not None:
        m.cellprob_threshold = float(cellprob_threshold)
    if flow_threshold is not None:
        m.flow_threshold = float(flow_threshold)
    if niter is not None:
        if int(niter) < 0:
            raise ValueError(f"niter must be >= 0, got {niter}")
        m.niter = int(niter)
    if min_size is not None:
        m.min_size = int(min_size)
    if max_size_fraction is not None:
        m.max_size_fraction = float(max_size_fraction)


def flows_to_labels(
    dp: Any,
    cellprob: Any,
    cellprob_threshold: float = 0.0,
    flow_threshold: float = 0.4,
    niter: int = 200,
    min_size: int = 15,
    max_size_fraction: float = 0.4,
) -> np.ndarray:
    """Cellpose flows → instance labels, exactly as Cellpose 4's ``compute_masks`` (CPU), in
    2-D or 3-D.

    Args:
        dp: flows (2, H, W), dY then dX (Cellpose's ``dP``), or (3, Z, Y, X), dZ, dY, dX, for a
            volume (Cellpose's ``do_3D`` masks: no flow quality control, ``flow_threshold``
            unused; holes filled and ``min_size`` counted in 3-D); converted to float32.
        cellprob: cell-probability logits (H, W), or (Z, Y, X) with 3-D flows; converted to
            float32.
        cellprob_threshold, flow_threshold, niter, min_size, max_size_fraction: Cellpose's
            parameters and defaults.

    Returns:
        uint32 labels (H, W) or (Z, Y, X), numbered as Cellpose numbers them.
    """
    dp = np.ascontiguousarray(dp, dtype=np.float32)
    cellprob = np.ascontiguousarray(cellprob, dtype=np.float32)
    ndim = dp.ndim - 1
    if ndim not in (2, 3) or dp.shape[0] != ndim:
        raise ValueError(f"dp must have shape (2, H, W) or (3, Z, Y, X), got {dp.shape}")
    if cellprob.shape != dp.shape[1:]:
        raise ValueError(
            f"cellprob must have shape {dp.shape[1:]} to match dp, got {cellprob.shape}"
        )
    lib = _native.lib()
    p = _native.MasksParams()
    _native.check(lib.cytoseg_masks_params_init(byref(p)))
    _check_struct(p, "cytoseg_masks_params")
    _set_masks(p, cellprob_threshold, flow_threshold, niter, min_size, max_size_fraction)
    labels = np.empty(cellprob.shape, dtype=np.uint32)
    call = lib.cytoseg_flows_to_labels_3d if ndim == 3 else lib.cytoseg_flows_to_labels
    _native.check(
        call(
            _ptr(dp, c_float),
            dp.size,
            _ptr(cellprob, c_float),
            cellprob.size,
            *cellprob.shape,
            byref(p),
            _ptr(labels, c_uint32),
            labels.size,
            None,
        )
    )
    return labels


def labels_to_flows(labels: Any) -> np.ndarray:
    """Instance labels → Cellpose flows by heat diffusion from each mask's centre, bit for bit:
    (H, W) labels give float64 (2, H, W), dY then dX (``masks_to_flows``); (Z, Y, X) labels give
    float64 (3, Z, Y, X), dZ, dY, dX (``masks_to_flows_gpu_3d``, 3-D training targets; in
    volumes over 4e7 voxels, where Cellpose divides by a zero norm in float32, 0 instead of its
    NaN or ±inf)."""
    lab = _labels_for_engine(labels, "labels")
    if lab.ndim == 3:
        flows = np.empty((3,) + lab.shape, dtype=np.float64)
        _native.check(
            _native.lib().cytoseg_labels_to_flows_3d(
                _ptr(lab, c_uint32), lab.size, *lab.shape, _ptr(flows, c_double), flows.size
            )
        )
        return flows
    if lab.ndim != 2:
        raise ValueError(
            f"labels must be 2-D (height, width) or 3-D (planes, height, width), got shape {lab.shape}"
        )
    h, w = lab.shape
    flows = np.empty((2, h, w), dtype=np.float64)
    _native.check(
        _native.lib().cytoseg_labels_to_flows(
            _ptr(lab, c_uint32), lab.size, h, w, _ptr(flows, c_double), flows.size
        )
    )
    return flows


def stitch_labels(labels: Any, stitch_threshold: float = 0.25, min_size: int = 15) -> np.ndarray:
    """Per-plane 2-D labels of a z-stack (Z, H, W) → 3-D labels (uint32, a new array), exactly
    as cellpose 4.2.1.1's stitching mode: ``utils.stitch3D(masks, stitch_threshold)`` (each
    plane's masks take the id of the previous plane's mask they overlap best by IoU, at least
    ``stitch_threshold``, else a new id), then ``utils.fill_holes_and_remove_small_masks(masks,
    min_size)`` on the volume (holes filled in 3-D, objects under ``min_size`` voxels removed;
    ``min_size <= 0`` keeps all). The planes are best labelled without a size filter, as Cellpose
    labels them before stitching."""
    lab = _labels_for_engine(labels, "labels")
    if lab.ndim != 3:
        raise ValueError(f"labels must be a (Z, H, W) stack, got shape {lab.shape}")
    out = lab.copy()
    z, h, w = out.shape
    _native.check(
        _native.lib().cytoseg_stitch_labels(
            _ptr(out, c_uint32), out.size, z, h, w, float(stitch_threshold), int(min_size), None
        )
    )
    return out


def evaluate(
    truth: Any,
    pred: Any,
    thresholds: float | Sequence[float] = (0.5, 0.75, 0.9),
    criterion: str = "iou",
) -> dict[str, Any] | list[dict[str, Any]]:
    """Scores predicted labels against ground truth, exactly as ``stardist.matching.matching``.

    Args:
        truth, pred: integer label images of the same shape (0 = background); (Z, Y, X)
            volumes are scored in 3-D, objects matched by voxel overlap.
        thresholds: one threshold, or several.
        criterion: ``"iou"``, ``"iot"`` or ``"iop"``.

    Returns:
        For each threshold a dict with stardist's fields (``criterion``, ``thresh``, ``fp``,
        ``tp``, ``fn``, ``precision``, ``recall``, ``accuracy`` (the DSB 2018 AP), ``f1``,
        ``n_true``, ``n_pred``, ``mean_true_score``, ``mean_matched_score``,
        ``panoptic_quality``) plus the pixel-level foreground ``dice``: a list of them, or a
        single dict when ``thresholds`` is a number.
    """
    t = _labels_for_engine(truth, "truth")
    p = _labels_for_engine(pred, "pred")
    if t.shape != p.shape:
        raise ValueError(f"truth and pred shapes differ: {t.shape} vs {p.shape}")
    if criterion not in _native.CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}: choose iou, iot or iop")
    scalar = np.ndim(thresholds) == 0
    ths = np.ascontiguousarray(np.atleast_1d(np.asarray(thresholds, dtype=np.float64)))
    stats = (_native.MatchingStats * len(ths))()
    dice = c_double()
    _native.check(
        _native.lib().cytoseg_evaluate_labels(
            _ptr(t, c_uint32),
            _ptr(p, c_uint32),
            t.size,
            _ptr(ths, c_double),
            len(ths),
            _native.CRITERIA[criterion],
            stats,
            byref(dice),
        )
    )
    records = [
        {
            "criterion": criterion,
            "thresh": s.thresh,
            "fp": int(s.fp),
            "tp": int(s.tp),
            "fn": int(s.fn_),
            "precision": s.precision,
            "recall": s.recall,
            "accuracy": s.accuracy,
            "f1": s.f1,
            "n_true": int(s.n_true),
            "n_pred": int(s.n_pred),
            "mean_true_score": s.mean_true_score,
            "mean_matched_score": s.mean_matched_score,
            "panoptic_quality": s.panoptic_quality,
            "dice": dice.value,
        }
        for s in stats
    ]
    return records[0] if scalar else records


def measure(
    labels: Any,
    image: Any = None,
    pixel_size: float | Sequence[float] | None = None,
    unit: str | None = None,
    as_frame: bool | None = None,
    return_units: bool = False,
    z_spacing: float | None = None,
) -> Any:
    """Measures every object of a label image (one row per label, in label order); a (Z, H, W)
    label stack is measured in 3-D (``area`` is the volume; centroids and boxes in z, y, x;
    solidity from skimage's 3-D convex hull).

    Args:
        labels: integer label image (H, W) or label stack (Z, H, W), 0 = background.
        image: optional intensity image (H, W) or (H, W, C), or for a stack (Z, H, W) or
            (Z, H, W, C), for the intensity columns (one set per channel).
        pixel_size: physical pixel size, one number or ``(height, width)``; lengths and areas
            are then in ``unit`` (default ``"um"`` when a pixel size is given).
        unit: the unit of ``pixel_size``.
        as_frame: return a pandas DataFrame (True), a dict of numpy columns (False), or a
            DataFrame when pandas is installed (None, the default).
        return_units: also return a dict of each column's unit ("" = none).
        z_spacing: distance between the planes of a stack, in ``unit`` (default 1).

    Returns:
        Columns named as skimage's ``regionprops_table`` (``label``, ``area``, ``centroid-0``,
        ...; see the README), ``label`` as uint32 and the rest float64. A DataFrame also carries
        the units in ``df.attrs["units"]``. With ``return_units``: ``(table, units)``.
    """
    if np.ndim(labels) == 3:
        columns, units = _measure_volume(labels, image, pixel_size, unit, z_spacing)
    else:
        if z_spacing is not None:
            raise ValueError("z_spacing is for (Z, H, W) label stacks")
        columns, units = _measure(labels, image, pixel_size, unit)
    if as_frame is None:
        try:
            import pandas  # noqa: F401

            as_frame = True
        except ImportError:
            as_frame = False
    if as_frame:
        import pandas as pd

        table: Any = pd.DataFrame(columns)
        table.attrs["units"] = units
    else:
        table = columns
    return (table, units) if return_units else table


def _measure(
    labels: Any, image: Any, pixel_size: Any, unit: str | None
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    _require("cytoseg_measure")
    lib = _native.lib()
    lab = _labels_for_engine(labels, "labels")
    if lab.ndim != 2:
        raise ValueError(f"labels must be 2-D (height, width), got shape {lab.shape}")
    h, w = lab.shape
    img_ptr, dtype, chans, row = None, _native.DTYPE_F32, 0, 0
    if image is not None:
        img, dtype, row = _image_for_engine(image, "image")
        if img.shape[:2] != (h, w):
            raise ValueError(f"image shape {img.shape} does not match labels shape {lab.shape}")
        chans = img.shape[2] if img.ndim == 3 else 1
        img_ptr = img.ctypes.data_as(c_void_p)
    cal = _calibration(pixel_size, unit)
    table = c_void_p()
    _native.check(
        lib.cytoseg_measure(
            _ptr(lab, c_uint32),
            w,
            h,
            img_ptr,
            dtype,
            chans,
            row,
            byref(cal) if cal is not None else None,
            byref(table),
        )
    )
    return _read_table(table, integer_columns=("label",))


def _measure_volume(
    labels: Any, image: Any, pixel_size: Any, unit: str | None, z_spacing: float | None
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    _require("cytoseg_measure_volume")
    lib = _native.lib()
    lab = _labels_for_engine(labels, "labels")
    d, h, w = lab.shape
    img_ptr, dtype, chans, row, plane = None, _native.DTYPE_F32, 0, 0, 0
    keep = None
    if image is not None:
        arr = np.asarray(image)
        if arr.shape[:3] != (d, h, w) or arr.ndim not in (3, 4):
            raise ValueError(f"image shape {arr.shape} does not match labels shape {lab.shape}")
        plane0, dtype, _ = _image_for_engine(arr[0], "image")
        keep = np.ascontiguousarray(arr.astype(plane0.dtype, copy=False))
        chans = keep.shape[3] if keep.ndim == 4 else 1
        row = w * chans * keep.itemsize
        plane = h * row
        img_ptr = keep.ctypes.data_as(c_void_p)
    z = 0.0 if z_spacing is None else float(z_spacing)
    if z_spacing is not None and not (np.isfinite(z) and z > 0):
        raise ValueError(f"z_spacing must be a positive number, got {z_spacing!r}")
    cal = _calibration(pixel_size, unit)
    table = c_void_p()
    _native.check(
        lib.cytoseg_measure_volume(
            _ptr(lab, c_uint32),
            w,
            h,
            d,
            img_ptr,
            dtype,
            chans,
            row,
            plane,
            byref(cal) if cal is not None else None,
            z,
            byref(table),
        )
    )
    return _read_table(table, integer_columns=("label",))


def _calibration(pixel_size: Any, unit: str | None) -> Any:
    """A ``cytoseg_calibration`` for ``pixel_size`` (one number or ``(height, width)``) in
    ``unit`` (default ``"um"``), or None when neither is given (pixels)."""
    if pixel_size is None and unit is None:
        return None
    ps = np.atleast_1d(np.asarray(1.0 if pixel_size is None else pixel_size, dtype=np.float64))
    if ps.size == 1:
        ps = np.array([ps[0], ps[0]])
    if ps.size != 2 or not np.all(np.isfinite(ps)) or np.any(ps <= 0):
        raise ValueError(f"pixel_size must be one or two positive numbers, got {pixel_size!r}")
    cal = _native.Calibration()
    _native.check(_native.lib().cytoseg_calibration_init(byref(cal)))
    _check_struct(cal, "cytoseg_calibration")
    cal.pixel_height, cal.pixel_width = float(ps[0]), float(ps[1])
    cal.unit = (unit if unit is not None else "um").encode("utf-8")
    return cal


def _read_table(
    table: c_void_p, integer_columns: Sequence[str] = ()
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The columns and units of a ``cytoseg_table``, which is freed."""
    lib = _native.lib()
    try:
        rows = lib.cytoseg_table_rows(table)
        columns: dict[str, np.ndarray] = {}
        units: dict[str, str] = {}
        for i in range(lib.cytoseg_table_columns(table)):
            name = lib.cytoseg_table_column_name(table, i).decode("utf-8")
            units[name] = (lib.cytoseg_table_column_unit(table, i) or b"").decode("utf-8")
            values = np.empty(rows, dtype=np.float64)
            _native.check(lib.cytoseg_table_column(table, i, _ptr(values, c_double), rows))
            columns[name] = values.astype(np.uint32) if name in integer_columns else values
    finally:
        lib.cytoseg_table_free(table)
    return columns, units


def _require(name: str) -> None:
    if not _native.has(name):
        raise NotImplementedError(
            f"this libcytoseg ({_native.library_path()}) has no {name}: rebuild it"
        )


def image_qc(
    image: Any,
    labels: Any,
    flows: Any = None,
    channel: int | None = None,
    pixel_size: float | Sequence[float] | None = None,
    unit: str | None = None,
) -> dict[str, float]:
    """Quality-control measures of one image and its objects (the QC columns of the batch
    run's ``summary.csv``; formulas in docs/qc.md). NaN where a measure is undefined.

    Measures:
        * ``objects``: objects in ``labels``.
        * ``focus_laplacian``: var(Laplacian) / var(image), the share of the variance at the
          finest scale; falls with blur.
        * ``focus_spectrum_slope``: slope of the log-log radial power spectrum; more negative
          when blurred.
        * ``saturated_fraction``: fraction of pixels at the image's maximum value.
        * ``background``, ``signal``: median intensity outside and inside objects.
        * ``noise``: Immerkær's noise sigma.
        * ``contrast_to_noise``: (signal - background) / noise.
        * ``dynamic_range``: (99.9th - 0.1th percentile) / the sample type's maximum (NaN for
          float images).
        * ``area_iqr``: interquartile range of the object areas (in ``unit`` squared when calibrated).
        * ``mean_cellprob``: mean sigmoid(cell probability) over object pixels (needs ``flows``).
        * ``flow_error_median``: median Cellpose flow error of the objects (needs ``flows``).
        * ``flow_qc_removed_fraction``: only known to segmentation (``summary.csv``); NaN here.

    Args:
        image: the image segmented, (H, W) or (H, W, C).
        labels: its integer label image (H, W), 0 = background.
        flows: optional network output as ``Model.segment(..., return_flows=True)`` gives it:
            an array of shape (3, H, W) holding dY, dX and the cell-probability logits.
        channel: the channel measured (0-based); None for the mean of all channels (what a
            one-channel model sees when the channel choice is automatic).
        pixel_size: physical pixel size, one number or ``(height, width)``, for ``area_iqr``.
        unit: the unit of ``pixel_size`` (default ``"um"`` when a pixel size is given).

    Returns:
        ``{measure: value}``, ``objects`` first, in the engine's column order.
    """
    _require("cytoseg_image_qc")
    lib = _native.lib()
    img, dtype, row, chans, lab = _image_and_labels(image, labels)
    h, w = lab.shape
    fl, fl_len = None, 0
    if flows is not None:
        f = np.ascontiguousarray(flows, dtype=np.float32)
        if f.shape != (3, h, w):
            raise ValueError(f"flows must have shape (3, {h}, {w}) (dY, dX, cellprob), got {f.shape}")
        fl, fl_len = _ptr(f, c_float), f.size
    ch = -1 if channel is None else int(channel)
    if ch < -1:
        raise ValueError(f"channel must be None or a channel index >= 0, got {channel}")
    cal = _calibration(pixel_size, unit)
    table = c_void_p()
    _native.check(
        lib.cytoseg_image_qc(
            img.ctypes.data_as(c_void_p),
            dtype,
            w,
            h,
            chans,
            row,
            ch,
            _ptr(lab, c_uint32),
            lab.size,
            fl,
            fl_len,
            byref(cal) if cal is not None else None,
            byref(table),
        )
    )
    columns, _ = _read_table(table)
    return {name: float(v[0]) for name, v in columns.items()}


def qc_report(
    out: str | os.PathLike[str],
    pattern: str | None = None,
    sidecar: str | os.PathLike[str] | None = None,
    group_by: str | Sequence[str] | None = None,
    plate_map: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Writes the quality-control report of a segmentation run (``segment_folder``'s or
    ``cytoseg segment``'s output folder), as ``cytoseg qc OUT``: ``OUT/qc/qc_report.html`` (one
    self-contained page) and CSV tables of flagged images, drift between acquisition groups
    and, with a plate map, treatments against groups. Method: docs/qc.md.

    Args:
        out: the run's output folder (holding ``summary.csv``).
        pattern: path pattern with named fields giving each image's group, matched against the
            end of its path, e.g. ``"{instrument}/{date}/*.tif"`` or
            ``"{plate}_{well}_s{site}.tif"``.
        sidecar: CSV with a ``file`` column, then one column per field.
        group_by: fields forming the groups (names or one comma-separated string; default
            every field except well, row, column, site, field and channel).
        plate_map: CSV with ``well``, ``treatment`` and optionally ``control``.

    Returns:
        ``{"html": Path, "images": int, "groups": int, "flagged": int, "drifting": int,
        "confounded": bool}``.
    """
    _require("cytoseg_qc_report")
    lib = _native.lib()
    options: dict[str, Any] = {}
    if pattern is not None:
        options["pattern"] = pattern
    if sidecar is not None:
        options["sidecar"] = os.fspath(sidecar)
    if group_by is not None:
        options["group_by"] = group_by if isinstance(group_by, str) else list(group_by)
    if plate_map is not None:
        options["plate_map"] = os.fspath(plate_map)
    counts = _native.QcCounts()
    needed = ctypes.c_size_t(0)
    out_b = os.fsencode(os.fspath(out))
    opts_b = json.dumps(options).encode("utf-8")
    buf = ctypes.create_string_buffer(4096)
    _native.check(lib.cytoseg_qc_report(out_b, opts_b, buf, len(buf), byref(needed), byref(counts)))
    if needed.value > len(buf):
        # The whole path needs more room: the report is written; only its path was cut.
        html = Path(os.fsdecode(out_b)) / "qc" / "qc_report.html"
    else:
        html = Path(os.fsdecode(buf.value))
    return {
        "html": html,
        "images": counts.images,
        "groups": counts.groups,
        "flagged": counts.flagged,
        "drifting": counts.drifting,
        "confounded": bool(counts.confounded),
    }


# The object classifier ------------------------------------------------------------------------

Picks = Mapping[int, str] | Sequence[tuple[int, str]]


def _pick_pairs(picks: Picks, what: str) -> list[tuple[int, str]]:
    """``[(label, class)]`` from a ``{label: class}`` mapping or a sequence of pairs, in order
    (the engine's error messages count picks from 0 in this order)."""
    pairs = list(picks.items()) if isinstance(picks, Mapping) else list(picks)
    out = []
    for i, p in enumerate(pairs):
        try:
            label, cls = p
        except (TypeError, ValueError):
            raise ValueError(
                f"{what}, pick {i}: expected a (label, class) pair, got {p!r}"
            ) from None
        if not isinstance(cls, str):
            raise TypeError(f"{what}, pick {i}: the class must be a string, got {cls!r}")
        if int(label) < 0 or int(label) > 0xFFFFFFFF:
            raise ValueError(f"{what}, pick {i}: label {label} is not a uint32")
        out.append((int(label), cls))
    return out


def train_classifier(
    images: Any,
    labels: Any,
    picks: Picks | Sequence[Picks],
    model_out: str | os.PathLike[str],
    *,
    names: Sequence[str] | None = None,
    trees: int = 200,
    seed: int = 0,
    folds: int = 5,
    pixel_size: float | Sequence[float] | None = None,
    unit: str | None = None,
) -> dict[str, Any]:
    """Trains the per-object classifier on objects picked in images held in memory and writes
    the model file (docs/classify.md).

    The features are those ``cytoseg segment`` writes to ``<stem>_objects.csv`` (every
    measurement, calibrated, plus texture), so the model applies to segment output folders
    (``cytoseg classify apply``) and models trained there apply here (:func:`classify`).

    Args:
        images: one image (H, W) or (H, W, C), or a list of them (same dtype and channels).
        labels: its label image (H, W), or a list of them, one per image.
        picks: for one image, ``{label: class}`` or a sequence of ``(label, class)`` pairs;
            for a list of images, a list of those, one per image. Each class needs two
            objects or more; there must be two classes or more.
        model_out: the model file to write (JSON; replaced if present).
        names: names of the images for messages and the model's training record (default
            ``image 0``, ``image 1``, ...).
        trees, seed, folds: the forest's size, its random seed, the cross-validation folds.
        pixel_size, unit: the pixel size (one number or ``(height, width)``) and its unit
            (default ``"um"``): the units in the feature names, which must match where the
            model is applied (a folder run's images carry theirs).

    Returns:
        The model's description (:func:`classifier_info`): ``classes``, ``cv_accuracy``,
        ``confusion`` (cross-validated, ``[true][predicted]``), ``features``, ... plus ``path``.

    Raises:
        InvalidArgumentError: a pick on the background (label 0) or on no object, an object
            picked with two classes, one class only (the message names the image and pick).
    """
    _require("cytoseg_classifier_train_images")
    several = isinstance(images, (list, tuple))
    imgs = list(images) if several else [images]
    labs = list(labels) if several else [labels]
    pks = list(picks) if several else [picks]  # type: ignore[arg-type]
    if not (len(imgs) == len(labs) == len(pks)) or not imgs:
        raise ValueError(
            f"give as many label images and pick lists as images: {len(imgs)} images, "
            f"{len(labs)} label images, {len(pks)} pick lists"
        )
    if names is not None and len(names) != len(imgs):
        raise ValueError(f"{len(names)} names for {len(imgs)} images")
    what = [names[i] if names is not None else f"image {i}" for i in range(len(imgs))]
    arrays, lab_arrays, pairs = [], [], []
    for i, (img, lab, p) in enumerate(zip(imgs, labs, pks)):
        a, dtype, _ = _image_for_engine(img, what[i])
        a = np.ascontiguousarray(a)  # the engine takes packed rows here
        la = _labels_for_engine(lab, f"{what[i]} labels")
        if la.shape != a.shape[:2]:
            raise ValueError(
                f"{what[i]}: labels shape {la.shape} does not match image shape {a.shape[:2]}"
            )
        if arrays and (a.dtype != arrays[0].dtype or a.shape[2:] != arrays[0].shape[2:]):
            raise ValueError(
                f"{what[i]}: all images need the same dtype and channels ({arrays[0].dtype}, "
                f"{arrays[0].shape[2:] or 1} in {what[0]}; {a.dtype}, {a.shape[2:] or 1} here)"
            )
        arrays.append(a)
        lab_arrays.append(la)
        pairs.append(_pick_pairs(p, what[i]))
    classes = sorted({c for ps in pairs for _, c in ps})
    index = {c: k for k, c in enumerate(classes)}
    n = len(arrays)
    chans = arrays[0].shape[2] if arrays[0].ndim == 3 else 1
    all_pairs = [p for ps in pairs for p in ps]
    pick_labels = np.array([lb for lb, _ in all_pairs], dtype=np.uint32)
    pick_classes = np.array([index[c] for _, c in all_pairs], dtype=np.uint32)
    enc_names = [w.encode("utf-8") for w in what]
    enc_classes = [c.encode("utf-8") for c in classes]
    cal = _calibration(pixel_size, unit)
    cv = c_double(float("nan"))
    out = os.fspath(model_out)
    lib = _native.lib()
    _native.check(
        lib.cytoseg_classifier_train_images(
            n,
            (c_void_p * n)(*[a.ctypes.data_as(c_void_p) for a in arrays]),
            _NATIVE_DTYPES[arrays[0].dtype],
            chans,
            (ctypes.c_size_t * n)(*[a.shape[1] for a in arrays]),
            (ctypes.c_size_t * n)(*[a.shape[0] for a in arrays]),
            (_U32P * n)(*[_ptr(la, c_uint32) for la in lab_arrays]),
            (c_char_p * n)(*enc_names),
            byref(cal) if cal is not None else None,
            (ctypes.c_size_t * n)(*[len(ps) for ps in pairs]),
            _ptr(pick_labels, c_uint32),
            _ptr(pick_classes, c_uint32),
            len(classes),
            (c_char_p * max(len(classes), 1))(*enc_classes),
            int(trees),
            int(seed),
            int(folds),
            out.encode("utf-8"),
            byref(cv),
        )
    )
    return {**classifier_info(out), "path": out}


def classifier_info(model: str | os.PathLike[str]) -> dict[str, Any]:
    """A classifier model file's description: ``classes`` (in the order of class indices),
    ``features``, ``cv_accuracy``, ``oob_accuracy``, ``folds``, ``confusion``
    (cross-validated, ``[true][predicted]``), ``objects_per_class``, ``trees``, ``seed``,
    ``cytoseg_version``."""
    _require("cytoseg_classifier_info")
    f = _native.lib().cytoseg_classifier_info
    path = os.fspath(model).encode("utf-8")
    need = ctypes.c_size_t(0)
    _native.check(f(path, None, 0, byref(need)))
    buf = ctypes.create_string_buffer(max(int(need.value), 1))
    _native.check(f(path, buf, len(buf), None))
    return json.loads(buf.value.decode("utf-8"))


def classify(
    model: str | os.PathLike[str],
    image: Any,
    labels: Any,
    *,
    pixel_size: float | Sequence[float] | None = None,
    unit: str | None = None,
) -> dict[str, Any]:
    """Classifies every object of ``labels`` with a classifier model file: the classes
    ``cytoseg classify apply`` writes for the same image and labels.

    Args:
        model: the model file (:func:`train_classifier` or ``cytoseg classify train``).
        image: the image (H, W) or (H, W, C), with the channels of the training images.
        labels: its label image (H, W).
        pixel_size, unit: as in :func:`train_classifier` (they must give the units of the
            model's features).

    Returns:
        Columns, one row per object in label order: ``label`` (uint32), ``class`` (an object
        array of class names; ``""`` when a feature is not finite), ``class_index`` (int32,
        -1 when unclassified), ``probability`` (float64, of that class; NaN when
        unclassified); and ``classes``, the model's class names.
    """
    _require("cytoseg_classify_labels")
    img, dtype, row, chans, lab = _image_and_labels(image, labels)
    h, w = lab.shape
    cap = int(lab.max()) if lab.size else 0  # objects are at most the largest label
    out_labels = np.zeros(max(cap, 1), dtype=np.uint32)
    out_classes = np.zeros(max(cap, 1), dtype=np.int32)
    out_p = np.zeros(max(cap, 1), dtype=np.float64)
    n = ctypes.c_size_t(0)
    cal = _calibration(pixel_size, unit)
    path = os.fspath(model)
    _native.check(
        _native.lib().cytoseg_classify_labels(
            path.encode("utf-8"),
            img.ctypes.data_as(c_void_p),
            dtype,
            w,
            h,
            chans,
            row,
            _ptr(lab, c_uint32),
            lab.size,
            byref(cal) if cal is not None else None,
            len(out_labels),
            _ptr(out_labels, c_uint32),
            _ptr(out_classes, ctypes.c_int32),
            _ptr(out_p, c_double),
            byref(n),
        )
    )
    k = int(n.value)
    classes = classifier_info(path)["classes"]
    idx = out_classes[:k].copy()
    names = np.array([classes[i] if i >= 0 else "" for i in idx], dtype=object)
    return {
        "label": out_labels[:k].copy(),
        "class": names,
        "class_index": idx,
        "probability": out_p[:k].copy(),
        "classes": list(classes),
    }
