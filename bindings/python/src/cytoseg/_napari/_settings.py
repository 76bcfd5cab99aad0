"""Remembered widget settings (QSettings; ``$CYTOSEG_NAPARI_SETTINGS`` names an .ini file
instead, which the tests use so that they never touch a user's settings)."""

from __future__ import annotations

import os
from typing import Any


def settings() -> Any:
    """The QSettings store of the plugin."""
    from qtpy.QtCore import QSettings

    path = os.environ.get("CYTOSEG_NAPARI_SETTINGS")
    if path:
        return QSettings(path, QSettings.Format.IniFormat)
    return QSettings("cytoseg", "napari-cytoseg")


def read(key: str, default: Any) -> Any:
    """A stored value converted to the type of ``default`` (``default`` when absent or bad)."""
    value = settings().value(key, None)
    if value is None:
        return default
    try:
        if isinstance(default, bool):
            return str(value).lower() in ("1", "true", "yes")
        return type(default)(value)
    except (TypeError, ValueError):
        return default


def write(values: dict[str, Any]) -> None:
    """Stores several values at once."""
    s = settings()
    for k, v in values.items():
        s.setValue(k, v)
    s.sync()
