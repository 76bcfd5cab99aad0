"""Sample data: the bundled example image."""

from __future__ import annotations

from typing import Any


def nuclei_example() -> list[tuple[Any, dict[str, Any], str]]:
    """The bundled 320×320 uint16 nuclei image as an napari image layer."""
    import tifffile

    from ..api import example_image_path

    data = tifffile.imread(example_image_path())
    return [(data, {"name": "nuclei_example", "colormap": "gray"}, "image")]
