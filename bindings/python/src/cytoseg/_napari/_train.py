"""The Train dock widget: fine-tunes (clones) a model on corrected layers or folders of
annotated images, with the engine's native trainer (:func:`cytoseg.train`), in a worker thread.

The widget only converts napari's data into what ``cytoseg.train`` reads: on Run, in the main
thread, every training pair is staged into a fresh temporary folder (layers written as TIFF
files, folders linked file by file), then the engine trains from there and the folder is
deleted. The clone is saved by name in the user's models folder (:func:`cytoseg.user_model_dir`),
where the Segment widget, the command line and Fiji find it.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    SpinBox,
)

from .. import api
from .._errors import CancelledError, CytosegError
from . import _settings
from ._widget import (
    FOLDER_CHOICE,
    layer_image,
    model_choices,
    open_segment_widgets,
    refresh_model_combo,
)

if TYPE_CHECKING:
    import napari

#: The file the engine keeps in a clone's folder while a run is unfinished (cancelled).
CHECKPOINT_FILE = "checkpoint.cytoseg-train"
#: Label-file suffixes of the engine's stem pairing (crates/core/src/train/data.rs
#: ``LABEL_SUFFIXES``): needed only to split a folder that holds images and labels together.
LABEL_SUFFIXES = ("_masks", "_labels", "_label", "_mask", "_seg")


# training pairs -----------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerPair:
    """An image layer, its Labels layer and optionally a Shapes layer marking the annotated
    regions (outside them nothing is learned). The layers are read when Run is pressed, so
    corrections made after adding the pair are included."""

    image: Any
    labels: Any
    regions: Any = None

    def describe(self) -> str:
        """One line for the list of pairs."""
        text = f"layers: {self.image.name} + {self.labels.name}"
        return text + (f" (regions: {self.regions.name})" if self.regions is not None else "")

    def uses(self, layer: Any) -> bool:
        """Whether ``layer`` is one of the pair's layers."""
        return any(layer is x for x in (self.image, self.labels, self.regions))


@dataclass(frozen=True)
class FolderPair:
    """A folder of images and the folder of their label images, paired by file stem as
    ``cytoseg train`` pairs them (``x.tif`` with ``x.tif``, ``x_masks.tif``, ...)."""

    images: Path
    labels: Path

    def describe(self) -> str:
        """One line for the list of pairs."""
        return f"folders: {self.images} + {self.labels}"


Pair = LayerPair | FolderPair


@dataclass(frozen=True)
class Staged:
    """Training data staged for the engine: ``images`` and ``labels`` folders, and ``masks``
    (annotated regions) when a pair has a Shapes layer."""

    root: Path
    images: Path
    labels: Path
    masks: Path | None


def _safe(name: str) -> str:
    """A layer name as a file-name part (letters, digits, ``-``, ``_`` and ``.`` kept)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "layer"


def _plane(layer: Any) -> np.ndarray:
    """The pixels of a 2-D (or RGB) image layer; ``ValueError`` for stacks."""
    data, lead = layer_image(layer)
    if lead:
        raise ValueError(
            f"image layer {layer.name!r} has shape {tuple(data.shape)}: training takes 2-D "
            "images (one plane); copy the plane you corrected into a layer of its own"
        )
    arr = np.asarray(data)
    return arr.astype(np.uint8) if arr.dtype == bool else arr


def _labels(layer: Any, shape: tuple[int, int], image_name: str) -> np.ndarray:
    """A Labels layer's data as uint16 (uint32 past 65535), checked against the image."""
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    lab = np.asarray(data)
    if lab.shape != shape:
        raise ValueError(
            f"labels layer {layer.name!r} has shape {lab.shape}, image {image_name!r} "
            f"{shape}: they must be the same size"
        )
    if not lab.any():
        raise ValueError(
            f"labels layer {layer.name!r} is empty: paint the objects (or segment first)"
        )
    if lab.min() < 0:
        raise ValueError(f"labels layer {layer.name!r} has negative labels")
    return lab.astype(np.uint16 if lab.max() <= np.iinfo(np.uint16).max else np.uint32)


def regions_mask(shapes: Any, image: Any, shape: tuple[int, int]) -> np.ndarray:
    """The union of a Shapes layer's shapes rasterized on the image's pixel grid (uint8, 1 =
    annotated) with napari's ``to_masks``; vertices go through world coordinates, so a Shapes
    layer with another scale or translate than the image still marks the right pixels."""
    from napari.layers import Shapes

    if len(shapes.data) == 0:
        raise ValueError(
            f"shapes layer {shapes.name!r} has no shapes: draw the regions you annotated, "
            "or choose no regions layer"
        )
    moved = [
        np.array([image.world_to_data(shapes.data_to_world(v))[-2:] for v in verts])
        for verts in shapes.data
    ]
    grid = Shapes(moved, shape_type=list(shapes.shape_type))
    mask = np.asarray(grid.to_masks(mask_shape=shape)).any(axis=0)
    if not mask.any():
        raise ValueError(f"the shapes of {shapes.name!r} lie outside image {image.name!r}")
    return mask.astype(np.uint8)


def _link(src: Path, dst: Path) -> None:
    """A symbolic link to ``src`` at ``dst``, or a copy where links cannot be made."""
    try:
        os.symlink(src.resolve(), dst)
    except OSError:
        shutil.copy2(src, dst)


def _link_folder(src: Path, dst: Path, prefix: str, keep: Any) -> int:
    """Links the (non-hidden) files of ``src`` whose names pass ``keep`` into ``dst`` as
    ``<prefix><name>``; returns how many."""
    n = 0
    for f in sorted(src.iterdir()):
        if f.name.startswith(".") or not f.is_file() or not keep(f):
            continue
        _link(f, dst / f"{prefix}{f.name}")
        n += 1
    return n


def stage(pairs: list[Pair], root: Path) -> Staged:
    """Writes the training pairs into ``root`` (``images/``, ``labels/``, ``masks/``) for
    :func:`cytoseg.train`; ``ValueError`` naming the first problem.

    Pair ``k`` (from 1) gets the file-name prefix ``p<k>_``, so names never collide and the
    engine's pairing by stem still matches (``p3_x.tif`` with ``p3_x_masks.tif``). Layers are
    written with tifffile: the image plane as is (RGB stays H×W×3), the labels as uint16 or
    uint32, and, when any pair has a Shapes layer, a uint8 region mask for every layer pair
    (all ones for pairs without one). Folder pairs are linked file by file (copied where
    links fail); images without a mask count everywhere (the engine's rule)."""
    import tifffile

    if not pairs:
        raise ValueError("add at least one training pair (Add layers or Add folders)")
    images, labels, masks = root / "images", root / "labels", root / "masks"
    images.mkdir(parents=True)
    labels.mkdir()
    with_regions = any(isinstance(p, LayerPair) and p.regions is not None for p in pairs)
    if with_regions:
        masks.mkdir()
    for k, pair in enumerate(pairs, start=1):
        prefix = f"p{k}_"
        if isinstance(pair, LayerPair):
            img = _plane(pair.image)
            plane = tuple(int(n) for n in img.shape[:2])
            lab = _labels(pair.labels, plane, pair.image.name)
            name = f"{prefix}{_safe(pair.image.name)}.tif"
            if pair.image.rgb:
                # colour without alpha: the engine makes a colour clone of colour images
                tifffile.imwrite(images / name, np.ascontiguousarray(img[..., :3]),
                                 photometric="rgb")
            else:
                tifffile.imwrite(images / name, img, photometric="minisblack")
            tifffile.imwrite(labels / name, lab, photometric="minisblack")
            if with_regions:
                region = (
                    regions_mask(pair.regions, pair.image, plane)
                    if pair.regions is not None
                    else np.ones(plane, np.uint8)
                )
                tifffile.imwrite(masks / name, region, photometric="minisblack")
        else:
            for what, folder in (("images", pair.images), ("labels", pair.labels)):
                if not folder.is_dir():
                    raise ValueError(f"pair {k}: the {what} folder {folder} does not exist")
            together = pair.images.resolve() == pair.labels.resolve()

            def is_label(f: Path) -> bool:
                return f.stem.endswith(LABEL_SUFFIXES)

            n = _link_folder(
                pair.images, images, prefix, (lambda f: not is_label(f)) if together else bool
            )
            if n == 0:
                raise ValueError(f"pair {k}: the images folder {pair.images} holds no file")
            if _link_folder(pair.labels, labels, prefix, is_label if together else bool) == 0:
                raise ValueError(f"pair {k}: the labels folder {pair.labels} holds no label file")
    return Staged(root, images, labels, masks if with_regions else None)


# the loss plot ------------------------------------------------------------------------------
def _loss_plot_class() -> type:
    """The LossPlot QWidget class (Qt imported only when a widget is made)."""
    from qtpy.QtCore import QPointF, QRectF, Qt
    from qtpy.QtGui import QColor, QPainter, QPainterPath, QPen
    from qtpy.QtWidgets import QSizePolicy, QWidget

    class LossPlot(QWidget):
        """The live loss curve: training loss per step and validation loss, drawn with
        QPainter (no plotting library)."""

        TRAIN = QColor(90, 170, 255)
        VAL = QColor(255, 160, 60)

        def __init__(self) -> None:
            super().__init__()
            self.setMinimumHeight(140)
            self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
            self.train: list[tuple[int, float]] = []
            self.val: list[tuple[int, float]] = []

        def clear(self) -> None:
            """Forgets the curves."""
            self.train, self.val = [], []
            self.update()

        def add(self, step: int, loss: float, val_loss: float) -> None:
            """Adds one step's losses (NaN for none)."""
            if math.isfinite(loss):
                self.train.append((step, loss))
            if math.isfinite(val_loss) and (not self.val or self.val[-1][1] != val_loss):
                self.val.append((step, val_loss))
            self.update()

        def paintEvent(self, _event: Any) -> None:  # noqa: N802 (Qt's name)
            p = QPainter(self)
            p.setRenderHint(QPainter.RenderHint.Antialiasing)
            fg = self.palette().color(self.foregroundRole())
            font = p.font()
            font.setPointSizeF(max(font.pointSizeF() * 0.85, 6.0))
            p.setFont(font)
            fm = p.fontMetrics()
            left, top, bottom = fm.horizontalAdvance("0.000") + 8, fm.height() + 4, fm.height() + 6
            box = QRectF(left, top, self.width() - left - 6, self.height() - top - bottom)
            p.setPen(QPen(fg, 1))
            p.drawRect(box)
            points = self.train + self.val
            if not points:
                p.drawText(box, Qt.AlignmentFlag.AlignCenter, "loss curve (during training)")
                p.end()
                return
            s0 = min(s for s, _ in points)
            s1 = max(max(s for s, _ in points), s0 + 1)
            y0 = min(v for _, v in points)
            y1 = max(v for _, v in points)
            if y1 - y0 < 1e-9:
                y0, y1 = y0 - 0.5, y1 + 0.5

            def at(step: int, v: float) -> QPointF:
                x = box.left() + (step - s0) / (s1 - s0) * box.width()
                y = box.bottom() - (v - y0) / (y1 - y0) * box.height()
                return QPointF(x, y)

            for color, curve in ((self.TRAIN, self.train), (self.VAL, self.val)):
                if not curve:
                    continue
                path = QPainterPath(at(*curve[0]))
                for s, v in curve[1:]:
                    path.lineTo(at(s, v))
                p.setPen(QPen(color, 1.5))
                p.drawPath(path)
                if len(curve) == 1:
                    p.drawEllipse(at(*curve[0]), 2.0, 2.0)
            p.setPen(QPen(fg, 1))
            p.drawText(QPointF(2, top + fm.ascent()), f"{y1:.3g}")
            p.drawText(QPointF(2, box.bottom()), f"{y0:.3g}")
            p.drawText(QPointF(box.left(), self.height() - 3), f"step {s0}")
            last = f"step {s1}"
            p.drawText(QPointF(box.right() - fm.horizontalAdvance(last), self.height() - 3), last)
            x = box.left()
            legend = [(self.TRAIN, "train loss")] + ([(self.VAL, "val loss")] if self.val else [])
            for color, text in legend:
                p.setPen(QPen(color, 1))
                p.drawText(QPointF(x, fm.ascent() + 1), text)
                x += fm.horizontalAdvance(text) + 12
            p.end()

    return LossPlot


def _native_box(qwidget: Any) -> Container:
    """A label-less magicgui Container holding one plain Qt widget."""
    box = Container(labels=False)
    box.native.layout().setContentsMargins(0, 0, 0, 0)
    box.native.layout().addWidget(qwidget)
    return box


# the widget ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainJob:
    """Everything one training run needs, read from the widget in the main thread."""

    parent: str
    name: str
    folder: Path
    resume: bool
    staged: Staged
    options: dict[str, Any]


class TrainWidget(Container):
    """Dock widget that clones a model and fine-tunes it on the user's corrections.

    Parent model; a list of training pairs (image + Labels layer + optional Shapes layer
    marking the annotated regions, or an images folder + labels folder); the clone's name; a
    time budget and/or a number of steps; advanced options (diameter, channels, seed, batch
    size, crop). Run trains in a worker thread with a progress bar, a status line and a live
    loss plot; Cancel keeps a checkpoint, and Run with the same name continues from it. The
    finished clone is selected in every open Segment widget."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__()
        from napari.layers import Image, Labels, Shapes
        from qtpy.QtCore import Qt
        from qtpy.QtWidgets import QAbstractItemView, QListWidget

        self._viewer = napari_viewer
        self._types = (Image, Labels, Shapes)
        # model and pairs
        self.parent_model = ComboBox(label="parent model", choices=model_choices)
        self.parent_folder = FileEdit(label="folder", mode="d", visible=False)
        self.image = ComboBox(label="image", choices=self._layers_of(Image))
        self.labels = ComboBox(label="labels", choices=self._layers_of(Labels))
        self.regions = ComboBox(
            label="regions",
            choices=self._layers_of(Shapes),
            nullable=True,
            value=None,
            tooltip="Optional Shapes layer marking what you annotated; outside its shapes "
            "nothing is learned",
        )
        self.add_layers_button = PushButton(text="Add layers")
        self.images_folder = FileEdit(label="images folder", mode="d")
        self.labels_folder = FileEdit(label="labels folder", mode="d")
        self.add_folders_button = PushButton(text="Add folders")
        self.pair_list = QListWidget()
        self.pair_list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.pair_list.setWordWrap(True)
        self.pair_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.pair_list.setMinimumHeight(50)
        self.pair_list.setMaximumHeight(100)
        self.remove_button = PushButton(text="Remove")
        # the clone and its schedule
        self.clone_name = LineEdit(label="clone name")
        self.minutes = FloatSpinBox(
            label="minutes",
            min=0.0,
            max=10000.0,
            step=1.0,
            value=10.0,
            tooltip="Time budget; training stops when it is spent. 0 = no limit",
        )
        self.steps = SpinBox(
            label="steps", min=0, max=1_000_000, step=100, tooltip="0 = the engine's default"
        )
        self.show_advanced = CheckBox(text="advanced", value=False)
        self.diameter = FloatSpinBox(
            label="diameter",
            min=0.0,
            max=10000.0,
            step=1.0,
            tooltip="Typical object diameter in the training images; 0 = measured from labels",
        )
        self.channels = SpinBox(
            label="channels",
            min=0,
            max=16,
            tooltip="Input channels of the clone; 0 = automatic (3 when every image is RGB and "
            "the parent takes one channel, else the parent's)",
        )
        self.seed = SpinBox(label="seed", min=0, max=2**31 - 1)
        self.batch_size = SpinBox(
            label="batch size", min=0, max=256, tooltip="0 = the engine's default"
        )
        self.crop = SpinBox(
            label="crop",
            min=0,
            max=4096,
            step=16,
            tooltip="Training crop edge in pixels (multiple of 16); 0 = the engine's default",
        )
        self.advanced = Container(
            widgets=[self.diameter, self.channels, self.seed, self.batch_size, self.crop],
            visible=False,
        )
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(value=0, min=0, max=1000, label="progress")
        self.status = Label(value="")
        self.status.native.setWordWrap(True)
        self.loss_plot = _loss_plot_class()()
        self.extend(
            [
                self.parent_model,
                self.parent_folder,
                Label(value="<b>Training pairs</b>"),
                self.image,
                self.labels,
                self.regions,
                self.add_layers_button,
                self.images_folder,
                self.labels_folder,
                self.add_folders_button,
                _native_box(self.pair_list),
                self.remove_button,
                Label(value="<b>Clone</b>"),
                self.clone_name,
                self.minutes,
                self.steps,
                self.show_advanced,
                self.advanced,
                self.run_button,
                self.cancel_button,
                self.progress,
                self.status,
                _native_box(self.loss_plot),
            ]
        )

        #: The training pairs, in the order of the list widget.
        self.pairs: list[Pair] = []
        self._auto_name = ""
        self._name_from_parent = False
        self._load_settings()
        self.parent_model.changed.connect(self._on_parent_choice)
        self._on_parent_choice(self.parent_model.value)
        self.show_advanced.changed.connect(lambda v: setattr(self.advanced, "visible", v))
        self.add_layers_button.changed.connect(self.add_layers)
        self.add_folders_button.changed.connect(self.add_folders)
        self.remove_button.changed.connect(self.remove_selected)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.image.changed.connect(self._match_labels)
        self._match_labels(self.image.value)
        layers = napari_viewer.layers
        for ev in (layers.events.inserted, layers.events.removed, layers.events.reordered):
            ev.connect(self._refresh_layers)
        layers.events.removed.connect(self._drop_pairs_of_removed_layer)
        layers.events.inserted.connect(self._on_inserted)

        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._points: list[dict[str, float]] = []  # progress reports not yet shown
        self._last: dict[str, float] | None = None
        self._plot_name = ""  # the clone the plotted curve belongs to
        self._job: TrainJob | None = None
        self._timer: Any = None
        self.worker: Any = None
        #: Number of runs started (tests and scripts wait on it).
        self.runs = 0
        self.last_error: BaseException | None = None
        #: ``cytoseg.train``'s result of the last successful run.
        self.last_result: dict[str, float] | None = None

    # choices, pairs & settings ------------------------------------------------------------
    def _layers_of(self, kind: type) -> Any:
        return lambda *_: [ly for ly in self._viewer.layers if isinstance(ly, kind)]

    def _refresh_layers(self, *_: Any) -> None:
        for combo in (self.image, self.labels, self.regions):
            combo.reset_choices()

    def _match_labels(self, image: Any) -> None:
        """Chooses ``<image>_labels`` (what Segment made, then corrected) when it exists."""
        name = f"{image.name}_labels" if image is not None else None
        match = next((ly for ly in self.labels.choices if ly.name == name), None)
        if match is not None:
            self.labels.value = match

    def _on_inserted(self, event: Any) -> None:
        layer = getattr(event, "value", None)
        image = self.image.value
        if image is not None and getattr(layer, "name", None) == f"{image.name}_labels":
            self._match_labels(image)

    def _on_parent_choice(self, value: Any) -> None:
        self.parent_folder.visible = value == FOLDER_CHOICE
        name = self.clone_name.value
        if not name or (name == self._auto_name and self._name_from_parent):
            self._set_auto_name(self._parent_stem(), from_parent=True)

    def _parent_stem(self) -> str:
        return f"{Path(str(self.parent())).name or 'model'}-tuned"

    def _set_auto_name(self, stem: str, from_parent: bool) -> None:
        self._auto_name = self.unique_name(stem)
        self._name_from_parent = from_parent
        self.clone_name.value = self._auto_name

    @staticmethod
    def unique_name(stem: str) -> str:
        """``stem``, or ``stem-2``, ``stem-3``, ...: the first name that is free (no model
        and no unfinished run of that name)."""
        stem = _safe(stem)
        for k in range(1, 1000):
            name = stem if k == 1 else f"{stem}-{k}"
            try:
                if not api.user_model_dir(name).exists():
                    return name
            except CytosegError:
                continue
        return stem

    def parent(self) -> str:
        """The chosen parent: a model name, or a package folder."""
        if self.parent_model.value == FOLDER_CHOICE:
            return str(self.parent_folder.value or "")
        return str(self.parent_model.value)

    def refresh_models(self, select: str | None = None) -> None:
        """Re-reads the model list (``cytoseg.list_models``), optionally choosing ``select``."""
        refresh_model_combo(self.parent_model, select)

    def _show_pairs(self) -> None:
        self.pair_list.clear()
        for k, pair in enumerate(self.pairs, start=1):
            self.pair_list.addItem(f"{k}. {pair.describe()}")

    def add_pair(self, pair: Pair) -> bool:
        """Adds a training pair to the list (False, with a message, for a duplicate)."""
        if pair in self.pairs:
            self.status.value = "That pair is in the list already."
            return False
        self.pairs.append(pair)
        self._show_pairs()
        self.status.value = f"{len(self.pairs)} training pair(s)."
        return True

    def add_layers(self, *_: Any) -> bool:
        """Adds the chosen (image, labels, regions) layers as a training pair."""
        if self.image.value is None or self.labels.value is None:
            self.status.value = "Choose an image layer and a Labels layer first."
            return False
        return self.add_pair(LayerPair(self.image.value, self.labels.value, self.regions.value))

    def add_folders(self, *_: Any) -> bool:
        """Adds the chosen (images folder, labels folder) as a training pair."""
        images, labels = self.images_folder.value, self.labels_folder.value
        if str(images or "").strip() in ("", ".") or str(labels or "").strip() in ("", "."):
            self.status.value = "Choose an images folder and a labels folder first."
            return False
        pair = FolderPair(Path(images).resolve(), Path(labels).resolve())
        for what, folder in (("images", pair.images), ("labels", pair.labels)):
            if not folder.is_dir():
                self.status.value = f"The {what} folder {folder} does not exist."
                return False
        return self.add_pair(pair)

    def remove_selected(self, *_: Any) -> None:
        """Removes the selected pairs from the list."""
        rows = sorted({self.pair_list.row(item) for item in self.pair_list.selectedItems()})
        for row in reversed(rows):
            del self.pairs[row]
        self._show_pairs()

    def _drop_pairs_of_removed_layer(self, event: Any) -> None:
        layer = getattr(event, "value", None)
        kept = [p for p in self.pairs if not (isinstance(p, LayerPair) and p.uses(layer))]
        if len(kept) != len(self.pairs):
            self.pairs = kept
            self._show_pairs()
            self.status.value = f"Pairs using layer {layer.name!r} were removed from the list."

    def _load_settings(self) -> None:
        parent = _settings.read("train/parent", api.DEFAULT_MODEL)
        if parent in self.parent_model.choices:
            self.parent_model.value = parent
        self.parent_folder.value = _settings.read("train/parent_folder", "")
        stem = _settings.read("train/name_stem", "")
        if stem:
            self._set_auto_name(stem, from_parent=False)
        self.minutes.value = _settings.read("train/minutes", 10.0)
        self.steps.value = _settings.read("train/steps", 0)
        self.diameter.value = _settings.read("train/diameter", 0.0)
        self.channels.value = _settings.read("train/channels", 0)
        self.seed.value = _settings.read("train/seed", 0)
        self.batch_size.value = _settings.read("train/batch_size", 0)
        self.crop.value = _settings.read("train/crop", 0)

    def _save_settings(self) -> None:
        _settings.write(
            {
                "train/parent": self.parent_model.value,
                "train/parent_folder": str(self.parent_folder.value or ""),
                "train/name_stem": self._name_stem(),
                "train/minutes": float(self.minutes.value),
                "train/steps": int(self.steps.value),
                "train/diameter": float(self.diameter.value),
                "train/channels": int(self.channels.value),
                "train/seed": int(self.seed.value),
                "train/batch_size": int(self.batch_size.value),
                "train/crop": int(self.crop.value),
            }
        )

    def _name_stem(self) -> str:
        """The typed name without a ``-<n>`` suffix ("" while the name follows the parent)."""
        name = self.clone_name.value.strip()
        if name == self._auto_name and self._name_from_parent:
            return ""
        return re.sub(r"-\d+$", "", name)

    def _options(self) -> dict[str, Any]:
        return {
            "steps": int(self.steps.value) or None,
            "minutes": float(self.minutes.value) or None,
            "diameter": float(self.diameter.value) or None,
            "channels": int(self.channels.value) or None,  # None: the engine's rule
            "seed": int(self.seed.value),
            "batch_size": int(self.batch_size.value) or None,
            "crop": int(self.crop.value) or None,
        }

    # running ------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """Whether a training run is in progress."""
        return self.worker is not None

    def _fail(self, message: str) -> None:
        self.status.value = message

    def run(self, *_: Any) -> Any:
        """Checks the inputs, stages the training data and starts training in a worker
        thread; returns the started worker (None when nothing could start, with the reason
        in the status line). A clone folder holding only a checkpoint (a cancelled run) is
        resumed."""
        from napari.qt.threading import create_worker
        from qtpy.QtCore import QTimer

        if self.busy:
            return None
        parent = self.parent()
        if not parent:
            self._fail("Choose the parent model's folder.")
            return None
        name = self.clone_name.value.strip()
        if not name:
            self._fail("Clone name: type a name for the new model.")
            return None
        try:
            folder = api.user_model_dir(name)
        except CytosegError as e:
            self._fail(f"Clone name: {e}")
            return None
        resume = (folder / CHECKPOINT_FILE).is_file() and not (folder / "manifest.json").exists()
        root = Path(tempfile.mkdtemp(prefix="cytoseg-train-"))
        try:
            staged = stage(self.pairs, root)
        except (ValueError, OSError) as e:
            shutil.rmtree(root, ignore_errors=True)
            self._fail(f"Cannot train: {e}")
            return None
        job = TrainJob(parent, name, folder, resume, staged, self._options())
        self._save_settings()
        self._cancel.clear()
        with self._lock:
            self._points, self._last = [], None
        if not (resume and self._plot_name == name):
            self.loss_plot.clear()
        self._plot_name = name
        self.last_error = None
        self.last_result = None
        self.progress.value = 0
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        verb = "Resuming" if resume else "Training"
        self.status.value = f"{verb} {name} from {Path(parent).name or parent}…"
        self._job = job
        worker = create_worker(
            self._train,
            job,
            _start_thread=False,
            _connect={
                "returned": self._on_result,
                "errored": self._on_error,
                "finished": self._on_finished,
            },
        )
        self.worker = worker
        self.runs += 1
        self._timer = QTimer()
        self._timer.timeout.connect(self._show_progress)
        self._timer.start(200)
        worker.start()
        return worker

    def cancel(self, *_: Any) -> None:
        """Asks the running training to stop after the current step (a checkpoint is kept)."""
        if self.busy:
            self._cancel.set()
            self.status.value = "Cancelling (saving a checkpoint)…"

    def _train(self, job: TrainJob) -> dict[str, float]:
        """Worker thread: the engine trains; the staged data is deleted afterwards."""

        def progress(p: dict[str, float]) -> bool:
            with self._lock:
                self._points.append(p)
                self._last = p
            return not self._cancel.is_set()

        try:
            s = job.staged
            return api.train(
                job.parent,
                s.images,
                s.labels,
                name=job.name,
                masks=s.masks,
                resume=job.resume,
                progress=progress,
                **job.options,
            )
        finally:
            shutil.rmtree(job.staged.root, ignore_errors=True)

    def _show_progress(self) -> None:
        with self._lock:
            points, self._points = self._points, []
            last = self._last
        for p in points:
            self.loss_plot.add(int(p["step"]), p["loss"], p["val_loss"])
        if last is None or self._job is None:
            return
        done = last["step"] / max(last["steps"], 1)
        budget = self._job.options.get("minutes")
        if budget:
            done = max(done, last["elapsed_s"] / (60.0 * budget))
        self.progress.value = int(round(1000 * min(done, 1.0)))
        if not self._cancel.is_set():
            val = last["val_loss"]
            text = f"step {int(last['step'])}/{int(last['steps'])}, loss {last['loss']:.4f}"
            if math.isfinite(val):
                text += f", val loss {val:.4f}"
            self.status.value = f"{text}, about {_duration(last['eta_s'])} left"

    def _on_result(self, result: dict[str, float]) -> None:
        from napari.utils.notifications import show_info

        job = self._job
        assert job is not None
        self.last_result = result
        self._show_progress()
        self.progress.value = 1000
        val = result["final_val_loss"]
        losses = f"train loss {result['final_train_loss']:.4f}"
        if math.isfinite(val):
            losses += f", val loss {val:.4f}"
        self.status.value = (
            f"Saved {job.name} in {job.folder} after {result['steps']} steps "
            f"({_duration(result['wall_s'])}; {losses}). It is selected in Segment; "
            "its loss plot is loss.png in that folder."
        )
        show_info(f"cytoseg: the clone {job.name!r} is saved in {job.folder}")
        for w in open_segment_widgets():
            w.refresh_models(select=job.name)
        self.refresh_models()
        if self.clone_name.value.strip() == job.name:
            if job.name == self._auto_name and self._name_from_parent:
                self._set_auto_name(self._parent_stem(), from_parent=True)
            else:
                self._set_auto_name(re.sub(r"-\d+$", "", job.name), from_parent=False)

    def _on_error(self, error: BaseException) -> None:
        from napari.utils.notifications import show_error

        self.last_error = error
        job = self._job
        if isinstance(error, CancelledError) and job is not None:
            step = f" at step {int(self._last['step'])}" if self._last else ""
            self.status.value = (
                f"Cancelled{step}. The checkpoint is kept in {job.folder}: press Run again "
                f"with the name {job.name} (same pairs and settings) to continue."
            )
        else:
            hint = ""
            if job is not None and job.resume:
                hint = (
                    f" (continuing needs the pairs and settings of the cancelled run; to start "
                    f"afresh, choose another name or delete {job.folder})"
                )
            self.status.value = f"Training failed: {error}{hint}"
            show_error(f"cytoseg training failed: {error}")

    def _on_finished(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self.worker = None
        self.run_button.enabled = True
        self.cancel_button.enabled = False


def _duration(seconds: float) -> str:
    """``42 s``, ``3 min 5 s``, ``1 h 2 min``."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"
