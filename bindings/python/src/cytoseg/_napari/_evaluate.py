"""The Evaluate dock widget: scores one Labels layer against another."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, LineEdit, PushButton, Table

from .. import api
from .._errors import CytosegError

if TYPE_CHECKING:
    import napari

#: Columns shown in the table, in order (stardist.matching's names; ``accuracy`` is the AP).
COLUMNS = [
    "thresh",
    "n_true",
    "n_pred",
    "tp",
    "fp",
    "fn",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "mean_true_score",
    "mean_matched_score",
    "panoptic_quality",
]


def parse_thresholds(text: str) -> list[float]:
    """ "0.5, 0.75 0.9" → [0.5, 0.75, 0.9]; ``ValueError`` naming a bad entry."""
    out = []
    for part in text.replace(",", " ").split():
        try:
            v = float(part)
        except ValueError:
            raise ValueError(f"threshold {part!r} is not a number") from None
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"threshold {v} is outside [0, 1]")
        out.append(v)
    if not out:
        raise ValueError("give at least one threshold, e.g. 0.5, 0.75, 0.9")
    return out


class EvaluateWidget(Container):
    """Dock widget: ground-truth and predicted Labels layers, thresholds and criterion; the
    matching statistics (stardist.matching's) appear in a table, one row per threshold."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__()
        from napari.layers import Labels

        self._viewer = napari_viewer
        self._labels_type = Labels
        self.truth = ComboBox(label="truth", choices=self._labels_layers)
        self.pred = ComboBox(label="prediction", choices=self._labels_layers)
        self.thresholds = LineEdit(label="thresholds", value="0.5, 0.75, 0.9")
        self.criterion = ComboBox(label="criterion", choices=["iou", "iot", "iop"], value="iou")
        self.run_button = PushButton(text="Evaluate")
        self.status = Label(value="")
        self.table = Table(value={c: [] for c in COLUMNS})
        self.extend(
            [
                self.truth,
                self.pred,
                self.thresholds,
                self.criterion,
                self.run_button,
                self.status,
                self.table,
            ]
        )
        self.results: list[dict[str, Any]] = []
        self.run_button.changed.connect(self.run)
        for ev in ("inserted", "removed", "reordered"):
            getattr(napari_viewer.layers.events, ev).connect(self._refresh)

    def _labels_layers(self, *_: Any) -> list[Any]:
        return [ly for ly in self._viewer.layers if isinstance(ly, self._labels_type)]

    def _refresh(self, *_: Any) -> None:
        self.truth.reset_choices()
        self.pred.reset_choices()

    def run(self, *_: Any) -> list[dict[str, Any]]:
        """Scores the layers and fills the table; returns the records (empty on error)."""
        self.results = []
        truth, pred = self.truth.value, self.pred.value
        if truth is None or pred is None:
            self.status.value = "Choose two Labels layers."
            return []
        try:
            ths = parse_thresholds(self.thresholds.value)
            t, p = np.asarray(truth.data), np.asarray(pred.data)
            if t.shape != p.shape:
                raise ValueError(f"{truth.name} is {t.shape} but {pred.name} is {p.shape}")
            records = api.evaluate(t, p, thresholds=ths, criterion=self.criterion.value)
        except (ValueError, TypeError, CytosegError) as e:
            self.status.value = f"Failed: {e}"
            return []
        self.results = records
        self.table.value = {c: [r[c] for r in records] for c in COLUMNS}
        dice = records[0]["dice"]
        self.status.value = f"{pred.name} vs {truth.name}: foreground Dice {dice:.4f}"
        return records
