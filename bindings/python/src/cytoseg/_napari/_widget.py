"""The Segment dock widget: runs cytoseg on an image layer in a worker thread."""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)

from .. import _native, api
from .._errors import CancelledError
from ..api import Model
from . import _settings
from ._classify import ClassifierPanel

if TYPE_CHECKING:
    import napari

FOLDER_CHOICE = "model folder…"
DEVICES = list(_native.DEVICES)  # the C API's cytoseg_device names (checked against the header)
TILINGS = list(_native.TILINGS)  # the C API's cytoseg_tiling names (checked against the header)
PRECISIONS = list(_native.PRECISIONS)  # cytoseg_precision names (checked against the header)

#: The Segment widgets made so far and not yet collected (the Train widget selects a finished
#: clone in each).
_SEGMENT_WIDGETS: weakref.WeakSet[SegmentWidget] = weakref.WeakSet()


def open_segment_widgets() -> list[SegmentWidget]:
    """The Segment widgets still alive (docked or not)."""
    return list(_SEGMENT_WIDGETS)


def model_choices(*_: Any) -> list[str]:
    """Every model offered by name (bundled first, then the user's clones; see
    :func:`cytoseg.list_models`), then the folder choice."""
    return [*(api.list_models() or [api.DEFAULT_MODEL]), FOLDER_CHOICE]


def refresh_model_combo(combo: ComboBox, select: str | None = None) -> None:
    """Re-reads a model ComboBox's choices (:func:`model_choices`) keeping the folder choice
    last (magicgui appends new choices), and chooses ``select`` (else keeps the value)."""
    keep = combo.value if select is None else select
    with combo.changed.blocked():
        combo.choices = lambda *_: [c for c in model_choices() if c != FOLDER_CHOICE]
        combo.choices = model_choices
    if keep in combo.choices:
        combo.value = keep


@dataclass(frozen=True)
class RunParams:
    """Everything one run needs, read from the widget in the main thread."""

    model: str
    device: str
    diameter: float | None
    cellprob_threshold: float
    flow_threshold: float
    tile_size: int | None
    #: How images are cut into network tiles: "fast" or "cellpose" (Cellpose's labels).
    tiling: str = "fast"
    #: Which copy of the network runs: "auto", "fp32" (exact) or "int8".
    precision: str = "auto"
    #: How a (Z, Y, X) stack is segmented: "planes" (2-D, plane by plane), "3-D flows"
    #: (Cellpose's do_3D) or "stitch" (2-D planes linked across z).
    stack_mode: str = "planes"
    #: z spacing / pixel size for "3-D flows"; None: from the layer's scale (z over x).
    anisotropy: float | None = None
    #: IoU linking masks of consecutive planes for "stitch".
    stitch_threshold: float = 0.25


#: Choices of the widget's "stacks" box (see :attr:`RunParams.stack_mode`).
STACK_MODES = ("planes", "3-D flows", "stitch")


def layer_image(layer: Any) -> tuple[Any, tuple[int, ...]]:
    """The pixels of an image layer (the full-resolution level of a multiscale one) and the
    shape of its leading (stack) axes: ``()`` for a 2-D or RGB image, ``(T,)`` for a (T, Y, X)
    stack, ... Planes are read one at a time, so lazy (dask) layers stay lazy."""
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    plane_ndim = 3 if layer.rgb else 2
    if data.ndim < plane_ndim:
        raise ValueError(f"layer {layer.name!r} has shape {data.shape}: not an image")
    return data, tuple(int(n) for n in data.shape[: data.ndim - plane_ndim])


def pixel_size(scale: Any) -> tuple[float, float] | None:
    """The layer's (y, x) scale as a pixel size, None when it is 1 (uncalibrated)."""
    sy, sx = (float(scale[-2]), float(scale[-1]))
    return None if (sy == 1.0 and sx == 1.0) else (sy, sx)


def measurements(labels: np.ndarray, image: np.ndarray, scale: Any) -> Any:
    """The features table of a result: cytoseg.measure (calibrated when the layer is scaled)."""
    return api.measure(labels, image, pixel_size=pixel_size(scale), as_frame=True)


def as_features(table: Any) -> Any:
    """``table`` as a Labels layer's ``features``: with an ``index`` column equal to ``label``,
    which napari uses to find a label value's row (without it, row ``i`` is taken for label
    value ``i``, the background's included, and hovering an object shows its neighbour's
    row)."""
    if table is None or "label" not in table or "index" in table:
        return table
    out = table.copy()
    out.insert(0, "index", out["label"].to_numpy())
    return out


def put_labels(
    viewer: Any, name: str, data: np.ndarray, like: Any, meta: dict[str, Any], features: Any = None
) -> None:
    """Shows ``data`` in the Labels layer ``name`` (updated when it exists, else added) with the
    scale and translate of layer ``like``, ``meta`` merged into its metadata and, when given,
    ``features``."""
    from napari.layers import Labels

    scale = tuple(like.scale)  # an RGB layer's scale has no channel axis
    translate = tuple(like.translate)
    existing = next((ly for ly in viewer.layers if ly.name == name), None)
    if isinstance(existing, Labels):
        existing.data = data
        existing.scale = scale
        existing.translate = translate
        if features is not None:
            existing.features = as_features(features)
        existing.metadata.update(meta)
    else:
        viewer.add_labels(
            data,
            name=name,
            scale=scale,
            translate=translate,
            features=as_features(features),
            metadata=meta,
        )


def plane_in_view(viewer: Any, layer: Any, axes: int) -> tuple[int, ...]:
    """The plane of ``layer`` in view: the index on its ``axes`` leading (stack) axes of the
    viewer's slider position, mapped through the layer's scale and translate."""
    position = np.asarray(layer.world_to_data(viewer.dims.point))
    shape = np.shape(layer.data)
    return tuple(
        int(np.clip(np.round(position[k]), 0, shape[k] - 1)) for k in range(axes)
    )


def show_plane_features(viewer: Any, layer: Any) -> None:
    """Sets a stack result's ``features`` to the objects of the plane in view.

    A stack is labelled plane by plane, 1..n in each plane (the engine's convention, as
    ``cytoseg segment`` writes it), and napari keys a Labels layer's features by label value,
    so the layer shows one plane's rows at a time; the whole table (leading ``index-0``, ...
    plane columns, then ``label``) is ``metadata["cytoseg"]["objects"]``. Other layers are
    left alone."""
    meta = layer.metadata.get("cytoseg")
    if not isinstance(meta, dict) or meta.get("objects") is None or not meta.get("plane_axes"):
        return
    objects = meta["objects"]
    plane = plane_in_view(viewer, layer, int(meta["plane_axes"]))
    if meta.get("features_plane") == plane:
        return
    rows = np.ones(len(objects), bool)
    for axis, i in enumerate(plane):
        rows &= objects[f"index-{axis}"].to_numpy() == i
    meta["features_plane"] = plane
    layer.features = as_features(objects[rows].reset_index(drop=True))


#: The QC measures the widget shows (of :func:`cytoseg.image_qc`): key, label, tooltip (the
#: formula, in one line; docs/qc.md has them all).
QC_SHOWN = (
    ("focus_laplacian", "focus", "var(Laplacian) / var(image): the share of variance at the finest scale; blur lowers it"),
    ("saturated_fraction", "saturated", "fraction of pixels equal to the image's maximum value"),
    ("background", "background", "median intensity of the pixels outside objects"),
    ("signal", "signal", "median intensity of the pixels inside objects"),
    ("contrast_to_noise", "contrast/noise", "(signal − background) / noise σ (Immerkær's estimator)"),
    ("mean_cellprob", "cell probability", "mean sigmoid(cell probability output) over object pixels: the network's confidence"),
    ("flow_error_median", "flow error", "median over objects of Cellpose's flow error (mean squared difference of the network's and the masks' flows)"),
)


def format_qc(value: float) -> str:
    """A QC value as shown: 4 significant digits, "–" when undefined (NaN)."""
    return "–" if not np.isfinite(value) else f"{value:.4g}"


class QcPanel(Container):
    """Read-only block of the QC measures of the current image (after a run), one labelled
    value per measure of :data:`QC_SHOWN`, the formula as its tooltip."""

    def __init__(self) -> None:
        super().__init__(label="QC", labels=True)
        self.values: dict[str, Label] = {}
        self.title = Label(value="QC: run to measure", tooltip="Quality control of the image (docs/qc.md)")
        self.append(self.title)
        for key, label, tip in QC_SHOWN:
            w = Label(value="–", label=label, tooltip=tip)
            self.values[key] = w
            self.append(w)

    def show_qc(self, qc: dict[str, float] | None, title: str = "") -> None:
        """Shows one image's measures (None clears)."""
        self.title.value = f"QC: {title}" if qc is not None else "QC: run to measure"
        for key, w in self.values.items():
            w.value = format_qc(qc.get(key, float("nan"))) if qc is not None else "–"


class SegmentWidget(Container):
    """Dock widget: image layer, model, diameter, thresholds, device and tile size; Run and
    Cancel buttons; progress bar. The result is a Labels layer ``<image>_labels`` (scale and
    translate of the image) whose ``features`` are cytoseg's measurements (for a stack, labelled
    plane by plane as the engine numbers it: the rows of the plane in view, the whole table in
    ``metadata["cytoseg"]["objects"]``; see :func:`show_plane_features`), and the image's QC
    measures (:func:`cytoseg.image_qc`, with the network's flows) in a read-only block, also in
    the layer's ``metadata["cytoseg"]["qc"]``; for a stack, those of the plane in view. Below,
    the Classifier block (:class:`ClassifierPanel`): train the object classifier on picked
    cells, apply it to a Labels layer."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__()
        from napari.layers import Image

        self._viewer = napari_viewer
        self._image_type = Image
        self.image = ComboBox(label="image", choices=self._image_layers)
        self.model = ComboBox(label="model", choices=model_choices)
        self.model_folder = FileEdit(label="folder", mode="d", visible=False)
        self.diameter = FloatSpinBox(
            label="diameter",
            min=0.0,
            max=10000.0,
            step=1.0,
            tooltip="Typical object diameter in pixels; 0 = the model's",
        )
        self.cellprob = FloatSpinBox(
            label="cellprob_threshold", min=-20.0, max=20.0, step=0.5, value=0.0
        )
        self.flow = FloatSpinBox(
            label="flow_threshold",
            min=0.0,
            max=10.0,
            step=0.05,
            value=0.4,
            tooltip="Flow error above which masks are dropped; 0 = off",
        )
        self.device = ComboBox(label="device", choices=DEVICES, value="auto")
        self.tile_size = SpinBox(
            label="tile_size",
            min=0,
            max=8192,
            step=16,
            tooltip="Tile edge in pixels (multiple of 16); 0 = the default (the model's with "
            "cellpose tiling, the largest tile edge 1024 with fast)",
        )
        self.tiling = ComboBox(
            label="tiling",
            choices=list(TILINGS),
            value="fast",
            tooltip="fast: whole images up to 1024² in one piece (1.3-2× faster in 2-D); cellpose: "
            "Cellpose's 256² tiles with 10% overlap, for labels identical to Cellpose's",
        )
        self.precision = ComboBox(
            label="precision",
            choices=list(PRECISIONS),
            value="auto",
            tooltip="auto: the model's int8 network on the CPU with fast tiling where its "
            "validated accuracy is within 0.005 AP@0.5 of float32's (faster), else float32; "
            "fp32: exact (with cellpose tiling, Cellpose's labels); int8: the model's int8 network",
        )
        self.stack_mode = ComboBox(
            label="stacks",
            choices=STACK_MODES,
            value="planes",
            tooltip="How a (Z, Y, X) image becomes labels: plane by plane (2-D), 3-D objects from "
            "the network on YX, ZY and ZX planes (Cellpose's do_3D), or 2-D planes stitched "
            "across z by overlap (Cellpose's stitch_threshold)",
        )
        self.anisotropy = FloatSpinBox(
            label="anisotropy",
            min=0.0,
            max=100.0,
            step=0.5,
            value=0.0,
            tooltip="z spacing / pixel size for 3-D flows; 0 = from the layer's scale (z over x)",
        )
        self.stitch_threshold = FloatSpinBox(
            label="stitch_threshold",
            min=0.01,
            max=1.0,
            step=0.05,
            value=0.25,
            tooltip="Overlap (IoU) above which masks of consecutive planes are one object",
        )
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.save_button = PushButton(
            text="Save table…",
            enabled=False,
            tooltip="Write the last result's objects table (a stack's: every plane) as CSV, "
            "for Excel or R",
        )
        self.progress = ProgressBar(value=0, min=0, max=1, label="progress")
        self.status = Label(value="")
        self.qc = QcPanel()
        self.classifier = ClassifierPanel(napari_viewer)
        self.extend(
            [
                self.image,
                self.model,
                self.model_folder,
                self.diameter,
                self.cellprob,
                self.flow,
                self.device,
                self.tile_size,
                self.tiling,
                self.precision,
                self.stack_mode,
                self.anisotropy,
                self.stitch_threshold,
                self.run_button,
                self.cancel_button,
                self.progress,
                self.status,
                self.save_button,
                self.qc,
                self.classifier,
            ]
        )

        self._load_settings()
        self.model.changed.connect(self._on_model_choice)
        self._on_model_choice(self.model.value)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.save_button.changed.connect(lambda *_: self.save_table())
        napari_viewer.layers.events.inserted.connect(self._refresh_layers)
        napari_viewer.layers.events.removed.connect(self._refresh_layers)
        napari_viewer.layers.events.reordered.connect(self._refresh_layers)
        napari_viewer.dims.events.current_step.connect(self._on_plane)
        #: QC measures of the last result, per plane index (``()`` for a 2-D image).
        self.last_qc: dict[tuple[int, ...], dict[str, float]] = {}
        self._qc_layer: Any = None
        #: The last result's objects table (a stack's whole table) and its layer's name.
        self.last_table: Any = None
        self._table_name = ""

        self._cached: tuple[tuple[str, str], Model] | None = None
        self._model_lock = threading.Lock()
        self._cancel = threading.Event()
        self._tiles = (0, 0)
        self.worker: Any = None
        #: Number of runs started (tests and scripts wait on it).
        self.runs = 0
        self.last_error: BaseException | None = None
        self._timer: Any = None
        self._started = 0.0
        _SEGMENT_WIDGETS.add(self)

    # layers & settings -----------------------------------------------------------------
    def _image_layers(self, *_: Any) -> list[Any]:
        return [ly for ly in self._viewer.layers if isinstance(ly, self._image_type)]

    def _refresh_layers(self, *_: Any) -> None:
        self.image.reset_choices()

    def _on_model_choice(self, value: Any) -> None:
        self.model_folder.visible = value == FOLDER_CHOICE

    def refresh_models(self, select: str | None = None) -> None:
        """Re-reads the model list (a clone trained meanwhile appears), optionally choosing
        ``select``."""
        try:
            refresh_model_combo(self.model, select)
        except RuntimeError:  # its Qt widget was deleted (dock closed)
            _SEGMENT_WIDGETS.discard(self)

    def _load_settings(self) -> None:
        model = _settings.read("segment/model", self.model.value)
        if model in self.model.choices:
            self.model.value = model
        self.model_folder.value = _settings.read("segment/model_folder", "")
        self.diameter.value = _settings.read("segment/diameter", 0.0)
        # Unset settings start from the chosen model's manifest, not from copies here.
        try:
            chosen = self.model.value
            d = api.model_defaults(
                self.model_folder.value
                if chosen == FOLDER_CHOICE
                else api.list_models().get(chosen, chosen)  # a clone's folder
            )
        except (OSError, KeyError, ValueError):
            d = {"cellprob_threshold": 0.0, "flow_threshold": 0.4}
        self.cellprob.value = _settings.read("segment/cellprob_threshold", d["cellprob_threshold"])
        self.flow.value = _settings.read("segment/flow_threshold", d["flow_threshold"])
        device = _settings.read("segment/device", "auto")
        self.device.value = device if device in DEVICES else "auto"
        self.tile_size.value = _settings.read("segment/tile_size", 0)
        tiling = _settings.read("segment/tiling", "fast")
        self.tiling.value = tiling if tiling in TILINGS else "fast"
        precision = _settings.read("segment/precision", "auto")
        self.precision.value = precision if precision in PRECISIONS else "auto"
        mode = _settings.read("segment/stack_mode", "planes")
        self.stack_mode.value = mode if mode in STACK_MODES else "planes"
        self.anisotropy.value = _settings.read("segment/anisotropy", 0.0)
        self.stitch_threshold.value = _settings.read("segment/stitch_threshold", 0.25)

    def _save_settings(self) -> None:
        _settings.write(
            {
                "segment/model": self.model.value,
                "segment/model_folder": str(self.model_folder.value or ""),
                "segment/diameter": float(self.diameter.value),
                "segment/cellprob_threshold": float(self.cellprob.value),
                "segment/flow_threshold": float(self.flow.value),
                "segment/device": self.device.value,
                "segment/tile_size": int(self.tile_size.value),
                "segment/tiling": self.tiling.value,
                "segment/precision": self.precision.value,
                "segment/stack_mode": self.stack_mode.value,
                "segment/anisotropy": float(self.anisotropy.value),
                "segment/stitch_threshold": float(self.stitch_threshold.value),
            }
        )

    def params(self) -> RunParams:
        """The current settings as run parameters."""
        model = (
            str(self.model_folder.value) if self.model.value == FOLDER_CHOICE else self.model.value
        )
        return RunParams(
            model=model,
            device=self.device.value,
            diameter=float(self.diameter.value) or None,
            cellprob_threshold=float(self.cellprob.value),
            flow_threshold=float(self.flow.value),
            tile_size=int(self.tile_size.value) or None,
            tiling=self.tiling.value,
            precision=self.precision.value,
            stack_mode=self.stack_mode.value,
            anisotropy=float(self.anisotropy.value) or None,
            stitch_threshold=float(self.stitch_threshold.value),
        )

    # running ---------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """Whether a run is in progress."""
        return self.worker is not None

    def run(self, *_: Any) -> Any:
        """Starts segmenting the chosen image in a worker thread; returns the started worker
        (None when nothing could start)."""
        from napari.qt.threading import create_worker
        from qtpy.QtCore import QTimer

        if self.busy:
            return None
        layer = self.image.value
        if layer is None:
            self.status.value = "Choose an image layer."
            return None
        try:
            image, lead = layer_image(layer)
        except ValueError as e:
            self.status.value = str(e)
            return None
        params = self.params()
        if params.stack_mode != "planes" and len(lead) != 1:
            self.status.value = (
                f"{params.stack_mode} needs a (Z, Y, X) image layer; {layer.name} has "
                f"{len(lead)} stack axes"
            )
            return None
        self._save_settings()
        self._cancel.clear()
        self._tiles = (0, 0)
        self.last_error = None
        self.progress.max, self.progress.value = 1, 0
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        self.status.value = f"Segmenting {layer.name}…"
        self._started = time.perf_counter()
        worker = create_worker(
            self._segment,
            image,
            lead,
            params,
            layer.scale,
            _start_thread=False,
            _connect={
                "returned": lambda result: self._on_result(layer, result),
                "errored": self._on_error,
                "finished": self._on_finished,
            },
        )
        self.worker = worker
        self.runs += 1
        self._timer = QTimer()
        self._timer.timeout.connect(self._show_progress)
        self._timer.start(100)
        worker.start()  # napari only connects returned workers, it never starts them
        return worker

    def cancel(self, *_: Any) -> None:
        """Asks the running segmentation to stop after its current batch of tiles."""
        if self.busy:
            self._cancel.set()
            self.status.value = "Cancelling…"

    def _model_for(self, params: RunParams) -> Model:
        key = (params.model, params.device)
        with self._model_lock:
            if self._cached is None or self._cached[0] != key:
                if self._cached is not None:
                    self._cached[1].close()
                    self._cached = None
                self._cached = (key, Model(params.model, device=params.device))
            return self._cached[1]

    def _segment(
        self, data: Any, lead: tuple[int, ...], params: RunParams, scale: Any
    ) -> tuple[Any, ...]:
        """Worker thread: load (or reuse) the model, segment plane by plane, measure.

        A stack's planes are labelled 1..n each, the engine's convention (``cytoseg segment``
        writes the same label stack), and the table's rows lead with the plane's 0-based
        position (``index-0``, ...), as the objects table's ``t``/``z`` columns: (position,
        label) names one object. Returns labels, table, model info, parameters, QC per plane
        and the number of plane axes."""
        import pandas as pd

        model = self._model_for(params)
        if params.stack_mode != "planes":
            return self._segment_volume(model, data, params, scale)
        n_planes = int(np.prod(lead)) if lead else 1
        labels = np.zeros((*lead, *data.shape[len(lead) : len(lead) + 2]), np.uint32)
        tables = []
        qc: dict[tuple[int, ...], dict[str, float]] = {}
        for k, index in enumerate(np.ndindex(*lead)):

            def progress(done: int, total: int, k: int = k) -> bool:
                self._tiles = (k * total + done, n_planes * total)
                return not self._cancel.is_set()

            if self._cancel.is_set():
                raise CancelledError("cancelled", status=400)
            plane = np.asarray(data[index])
            lab, flows = model.segment(
                plane,
                diameter=params.diameter,
                cellprob_threshold=params.cellprob_threshold,
                flow_threshold=params.flow_threshold,
                tile_size=params.tile_size,
                tiling=params.tiling,
                precision=params.precision,
                progress=progress,
                return_flows=True,
            )
            # On what was segmented: the mean of the channels, as the model saw it.
            qc[index] = api.image_qc(plane, lab, flows, pixel_size=pixel_size(scale))
            del flows
            table = measurements(lab, plane, scale)
            for axis, i in enumerate(index):
                table.insert(axis, f"index-{axis}", i)
            tables.append(table)
            labels[index] = lab
        features = tables[0] if len(tables) == 1 else pd.concat(tables, ignore_index=True)
        return labels, features, model.info, params, qc, len(lead)

    def _segment_volume(
        self, model: Model, data: Any, params: RunParams, scale: Any
    ) -> tuple[Any, ...]:
        """Worker thread: a (Z, Y, X) stack into 3-D objects (:meth:`cytoseg.Model.segment_3d`),
        features = the engine's 3-D measurements (:func:`cytoseg.measure` on the stack, calibrated
        by the layer's scale)."""

        def progress(done: int, total: int) -> bool:
            self._tiles = (done, total)
            return not self._cancel.is_set()

        anisotropy = params.anisotropy
        if anisotropy is None and scale is not None and len(scale) >= 3 and scale[-1] > 0:
            anisotropy = float(scale[-3]) / float(scale[-1])
        labels = model.segment_3d(
            np.asarray(data),
            stitch_threshold=params.stitch_threshold if params.stack_mode == "stitch" else None,
            anisotropy=anisotropy if params.stack_mode == "3-D flows" else None,
            diameter=params.diameter,
            cellprob_threshold=params.cellprob_threshold,
            flow_threshold=params.flow_threshold,
            tile_size=params.tile_size,
            tiling=params.tiling,
            precision=params.precision,
            progress=progress,
        )
        stack = np.asarray(data)
        z_spacing = float(scale[-3]) if scale is not None and len(scale) >= 3 else None
        features = api.measure(
            labels, stack, pixel_size=pixel_size(scale), z_spacing=z_spacing, as_frame=True
        )
        if params.stack_mode == "3-D flows":
            params = RunParams(**{**params.__dict__, "anisotropy": anisotropy or 1.0})
        return labels, features, model.info, params, {}, 0

    def release_model(self) -> None:
        """Frees the cached model (it is reloaded on the next run)."""
        with self._model_lock:
            if self._cached is not None:
                self._cached[1].close()
                self._cached = None

    def _show_progress(self) -> None:
        done, total = self._tiles
        if total:
            self.progress.max = total
            self.progress.value = done

    def _on_result(self, layer: Any, result: tuple[Any, ...]) -> None:
        labels, features, info, params, qc, planes = result
        name = f"{layer.name}_labels"
        meta = {
            "cytoseg": {
                "model": info.get("name"),
                "model_version": info.get("version"),
                "device": info.get("device"),
                **params.__dict__,
                "qc": qc[()] if list(qc) == [()] else qc,
            }
        }
        if planes:
            meta["cytoseg"].update(objects=features, plane_axes=planes)
        self.last_table, self._table_name = features, name
        self.save_button.enabled = features is not None
        self.last_qc = qc
        self._qc_layer = layer
        self._show_qc()
        put_labels(self._viewer, name, labels, layer, meta, None if planes else features)
        if planes:
            show_plane_features(self._viewer, self._viewer.layers[name])
        n = len(features)
        self.status.value = (
            f"{n} objects in {time.perf_counter() - self._started:.1f} s ({info.get('device')})"
        )

    def save_table(self, path: str | os.PathLike[str] | None = None) -> Path | None:
        """Writes the last result's objects table as CSV to ``path`` (None: asks where, in a
        file dialog that confirms replacing a file); returns the path written, None when
        nothing was."""
        if self.last_table is None:
            self.status.value = "Nothing to save yet: run first."
            return None
        if path is None:
            from qtpy.QtWidgets import QFileDialog

            start = str(Path.home() / f"{self._table_name}_objects.csv")
            path, _ = QFileDialog.getSaveFileName(None, "Save objects table", start, "CSV (*.csv)")
            if not path:
                return None
        out = Path(path)
        # Written beside it, then renamed: a failed write leaves an existing file as it was.
        part = out.with_name(out.name + ".part")
        try:
            self.last_table.to_csv(part, index=False)
            os.replace(part, out)
        except OSError as e:
            with contextlib.suppress(OSError):
                part.unlink(missing_ok=True)
            self.status.value = f"Could not write {out}: {e}"
            return None
        self.status.value = f"{len(self.last_table)} objects written to {out}"
        return out

    def _on_plane(self, *_: Any) -> None:
        """The viewer moved to another plane: its QC, and the features of stack results."""
        self._show_qc()
        for layer in self._viewer.layers:
            show_plane_features(self._viewer, layer)

    def _show_qc(self, *_: Any) -> None:
        """Shows the QC of the plane in view of the segmented image."""
        if not self.last_qc:
            self.qc.show_qc(None)
            return
        index = next(iter(self.last_qc))
        if index and self._qc_layer is not None:
            step = plane_in_view(self._viewer, self._qc_layer, len(index))
            if step in self.last_qc:
                index = step
        title = (self._qc_layer.name if self._qc_layer is not None else "") + (
            f" {index}" if index else ""
        )
        self.qc.show_qc(self.last_qc[index], title)

    def _on_error(self, error: BaseException) -> None:
        self.last_error = error
        if isinstance(error, CancelledError):
            self.status.value = "Cancelled."
        else:
            self.status.value = f"Failed: {error}"

    def _on_finished(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self.worker = None
        self.run_button.enabled = True
        self.cancel_button.enabled = False
        self._show_progress()
