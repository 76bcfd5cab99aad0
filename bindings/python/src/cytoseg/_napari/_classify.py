"""The Classifier block of the Segment dock widget: train the per-object classifier on cells
picked with a Points layer, apply it to a Labels layer (docs/classify.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, LineEdit, PushButton, Table

from .. import api
from . import _settings

#: Where the model file goes unless the user names another.
DEFAULT_MODEL_FILE = "~/cytoseg-classifier.json"


def point_picks(points: Any, labels: Any) -> list[tuple[int, str]]:
    """``[(label, class)]`` of every point of a Points layer, in point order: the object of
    the Labels layer under the point (world coordinates, so scaled layers line up) and the
    point's ``class`` feature. Points off the image give label 0, which training reports
    (naming the point: pick ``i`` is point ``i``)."""
    if "class" not in points.features:
        raise ValueError(
            f"points layer {points.name!r} has no 'class' feature: give each point its class "
            "(e.g. points.features = {'class': [...]}, or the layer's feature table)"
        )
    classes = [str(c) for c in points.features["class"]]
    data = np.asarray(labels.data)
    out = []
    for i, p in enumerate(np.asarray(points.data)):
        world = points.data_to_world(p)
        idx = np.round(np.asarray(labels.world_to_data(world))[-2:]).astype(int)
        r, c = int(idx[0]), int(idx[1])
        inside = 0 <= r < data.shape[0] and 0 <= c < data.shape[1]
        out.append((int(data[r, c]) if inside else 0, classes[i]))
    return out


class ClassifierPanel(Container):
    """Image, Labels and Points layers; a model file; Train (writes the model, shows the
    cross-validated accuracy and, in the table, the cross-validated confusion matrix) and
    Apply (classifies the Labels layer's objects: ``class`` and ``class_probability`` features
    on the layer, a ``<labels>_classes`` layer whose value is class index + 1, and a table of
    label, class and probability). Both run in a worker thread; the block's ``worker`` is the
    one running."""

    def __init__(self, viewer: Any) -> None:
        super().__init__(label="Classifier", labels=True)
        from napari.layers import Image, Labels, Points

        self._viewer = viewer
        self._types = {"image": Image, "labels": Labels, "points": Points}
        self.title = Label(value="Classifier: pick cells with a Points layer (feature 'class')")
        self.image = ComboBox(label="image", choices=self._layers("image"))
        self.labels = ComboBox(label="labels", choices=self._layers("labels"))
        self.points = ComboBox(
            label="picks",
            choices=self._layers("points"),
            tooltip="Points layer: one point on each picked cell, its class in the 'class' feature",
        )
        self.model_file = LineEdit(
            label="model file",
            value=_settings.read("classify/model_file", DEFAULT_MODEL_FILE),
        )
        self.train_button = PushButton(text="Train")
        self.apply_button = PushButton(text="Apply")
        self.status = Label(value="")
        self.table = Table(value={"label": [], "class": [], "probability": []})
        self.extend(
            [
                self.title,
                self.image,
                self.labels,
                self.points,
                self.model_file,
                self.train_button,
                self.apply_button,
                self.status,
                self.table,
            ]
        )
        self.train_button.changed.connect(self.train)
        self.apply_button.changed.connect(self.apply)
        for ev in ("inserted", "removed", "reordered"):
            getattr(viewer.layers.events, ev).connect(self._refresh)
        self.worker: Any = None
        #: The last training's model description, the last result (tests read them).
        self.last_info: dict[str, Any] | None = None
        self.last_result: dict[str, Any] | None = None
        self.last_error: BaseException | None = None

    def _layers(self, kind: str) -> Any:
        def choices(*_: Any) -> list[Any]:
            return [ly for ly in self._viewer.layers if isinstance(ly, self._types[kind])]

        return choices

    def _refresh(self, *_: Any) -> None:
        for w in (self.image, self.labels, self.points):
            w.reset_choices()

    @property
    def busy(self) -> bool:
        """Whether training or applying runs."""
        return self.worker is not None

    def _path(self) -> Path:
        text = str(self.model_file.value).strip() or DEFAULT_MODEL_FILE
        _settings.write({"classify/model_file": text})
        return Path(text).expanduser()

    def _inputs(self, need_points: bool) -> tuple[Any, ...] | None:
        """The chosen layers' arrays and pixel size, or None (with a status) when unusable."""
        from ._widget import layer_image, pixel_size

        image, labels = self.image.value, self.labels.value
        if image is None or labels is None or (need_points and self.points.value is None):
            what = "image, labels and picks (Points)" if need_points else "image and labels"
            self.status.value = f"Choose the {what} layers."
            return None
        data, lead = layer_image(image)
        if lead or np.asarray(labels.data).ndim != 2:
            self.status.value = "The classifier takes 2-D images and labels (one plane)."
            return None
        return np.asarray(data), np.asarray(labels.data), pixel_size(image.scale)

    def _start(self, fn: Any, args: tuple[Any, ...], done: Any, what: str) -> Any:
        from napari.qt.threading import create_worker

        self.last_error = None
        self.train_button.enabled = self.apply_button.enabled = False
        self.status.value = what
        worker = create_worker(
            fn,
            *args,
            _start_thread=False,
            _connect={"returned": done, "errored": self._on_error, "finished": self._finished},
        )
        self.worker = worker
        worker.start()
        return worker

    def train(self, *_: Any) -> Any:
        """Trains on the picks (worker thread); returns the worker (None when nothing
        started)."""
        if self.busy:
            return None
        inputs = self._inputs(need_points=True)
        if inputs is None:
            return None
        image, labels, ps = inputs
        try:
            picks = point_picks(self.points.value, self.labels.value)
        except ValueError as e:
            self.status.value = str(e)
            return None
        name = self.image.value.name
        path = self._path()

        def work() -> dict[str, Any]:
            return api.train_classifier(image, labels, picks, path, names=[name], pixel_size=ps)

        return self._start(work, (), self._trained, f"Training on {len(picks)} picks…")

    def apply(self, *_: Any) -> Any:
        """Classifies the Labels layer's objects (worker thread); returns the worker."""
        if self.busy:
            return None
        inputs = self._inputs(need_points=False)
        if inputs is None:
            return None
        image, labels, ps = inputs
        layer = self.labels.value
        path = self._path()

        def work() -> tuple[Any, dict[str, Any]]:
            return layer, api.classify(path, image, labels, pixel_size=ps)

        return self._start(work, (), self._applied, f"Classifying {layer.name}…")

    def _trained(self, info: dict[str, Any]) -> None:
        self.last_info = info
        classes, conf = info["classes"], info["confusion"]
        self.table.value = {
            "true class": classes,
            **{f"predicted {c}": [row[j] for row in conf] for j, c in enumerate(classes)},
        }
        counts = ", ".join(f"{c} {n}" for c, n in info["objects_per_class"].items())
        self.status.value = (
            f"CV accuracy {info['cv_accuracy']:.3f} ({info['folds']}-fold; {counts}); "
            f"model written to {info['path']}"
        )

    def _applied(self, out: tuple[Any, dict[str, Any]]) -> None:
        import pandas as pd

        layer, r = out
        self.last_result = r
        cls = pd.DataFrame(
            {"label": r["label"], "class": r["class"], "class_probability": r["probability"]}
        )
        feats = layer.features
        if len(feats) and "label" in feats:
            keep = feats.drop(columns=[c for c in ("class", "class_probability") if c in feats])
            feats = keep.merge(cls, on="label", how="left")
        else:
            feats = cls
        from ._widget import as_features, put_labels

        layer.features = as_features(feats)
        # class index + 1 per pixel (0: background or unclassified)
        lut = np.zeros(int(r["label"].max()) + 1 if len(r["label"]) else 1, np.uint32)
        lut[r["label"]] = r["class_index"] + 1
        data = np.asarray(layer.data)
        classes_img = lut[np.clip(data, 0, len(lut) - 1)] * (data < len(lut))
        meta = {"cytoseg": {"classes": r["classes"]}}
        put_labels(self._viewer, f"{layer.name}_classes", classes_img, layer, meta)
        self.table.value = {
            "label": [int(v) for v in r["label"]],
            "class": list(r["class"]),
            "probability": [round(float(p), 4) for p in r["probability"]],
        }
        counts = pd.Series(r["class"]).value_counts().sort_index()
        self.status.value = "; ".join(f"{c or 'unclassified'}: {n}" for c, n in counts.items())

    def _on_error(self, error: BaseException) -> None:
        self.last_error = error
        self.status.value = f"Failed: {error}"

    def _finished(self) -> None:
        self.worker = None
        self.train_button.enabled = self.apply_button.enabled = True
