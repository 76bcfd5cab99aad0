"""Screenshots of the napari plugin for the documentation: the Train widget docked after a
short fine-tuning run (the live loss curve visible), and the Segment widget after a run.

It opens the bundled nuclei example, adds its reference labels as the "corrected" Labels layer
and a rectangle marking the corrected region, trains a clone for a few dozen steps into a
temporary user models folder (nothing is written to yours), selects the clone in Segment and
segments with it. Needs a display (run it under ``xvfb-run -a -s "-screen 0 1600x1000x24"``)
and the package's ``napari`` extra.

    python examples/screenshot_train.py [OUT_DIR]   # default: docs/images of the repository
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def _wait(app, done, timeout: float = 600.0) -> None:
    """Runs the Qt event loop until ``done()`` or the timeout."""
    t0 = time.monotonic()
    while not done():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError("the run did not finish")
        app.processEvents()
        time.sleep(0.02)


def _save(viewer, path: Path, app) -> None:
    """Saves the whole window as a palette PNG (small enough for the repository)."""
    from qtpy.QtCore import Qt
    from qtpy.QtGui import QImage

    for _ in range(20):  # let the canvas and the docks repaint
        app.processEvents()
        time.sleep(0.02)
    image = viewer.window._qt_window.grab().toImage()
    # a palette without dithering: flat areas stay flat and compress well
    image = image.convertToFormat(QImage.Format.Format_Indexed8, Qt.ImageConversionFlag.AvoidDither)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not image.save(str(path), "PNG", 0):
        raise OSError(f"cannot write {path}")
    print(f"{path}: {image.width()}×{image.height()}, {path.stat().st_size // 1024} KB")


def main(out_dir: Path) -> None:
    """Takes ``napari-train.png`` and ``napari-segment.png`` into ``out_dir``."""
    scratch = Path(tempfile.mkdtemp(prefix="cytoseg-screenshot-"))
    os.environ["CYTOSEG_USER_MODELS"] = str(scratch / "models")
    os.environ["CYTOSEG_NAPARI_SETTINGS"] = str(scratch / "settings.ini")

    import napari
    import numpy as np
    import tifffile
    from qtpy.QtWidgets import QApplication

    import cytoseg
    from cytoseg._napari._train import TrainWidget
    from cytoseg._napari._widget import SegmentWidget

    viewer = napari.Viewer(title="cytoseg: fine-tune a model in napari")
    app = QApplication.instance()
    viewer.window._qt_window.resize(1280, 840)
    image = viewer.add_image(
        tifffile.imread(cytoseg.example_image_path()), name="nuclei", colormap="gray"
    )
    truth = tifffile.imread(REPO / "models" / "examples" / "nuclei_example_labels.tif")
    labels = viewer.add_labels(truth.astype(np.uint32), name="nuclei_corrected", opacity=0.45)
    region = np.array([[20.0, 20.0], [20.0, 300.0], [300.0, 300.0], [300.0, 20.0]])
    shapes = viewer.add_shapes(
        [region],
        shape_type="rectangle",
        name="corrected region",
        edge_color="yellow",
        face_color="transparent",
        edge_width=3,
    )

    segment = SegmentWidget(viewer)
    segment.device.value = "cpu"
    train = TrainWidget(viewer)
    segment_dock = viewer.window.add_dock_widget(segment, name="Segment (cytoseg)", area="right")
    viewer.window.add_dock_widget(train, name="Train (cytoseg)", area="right", tabify=True)
    train.image.value, train.labels.value, train.regions.value = image, labels, shapes
    train.add_layers()
    train.clone_name.value = "nuclei-mylab"
    train.minutes.value = 10.0
    train.steps.value = 60
    train.batch_size.value = 4
    train.crop.value = 128
    if train.run() is None:
        raise SystemExit(train.status.value)
    _wait(app, lambda: not train.busy)
    if train.last_error is not None:
        raise SystemExit(train.status.value)
    viewer.layers.selection.active = labels
    viewer.reset_view()
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera  # napari 0.9
    camera.zoom *= 0.8  # margins around the image keep the PNG small
    _save(viewer, out_dir / "napari-train.png", app)

    # the Segment widget, with the new clone selected, after a run
    segment_dock.raise_()
    segment.image.value = image
    labels.visible = False
    shapes.visible = False
    segment.run()
    _wait(app, lambda: not segment.busy)
    if segment.last_error is not None:
        raise SystemExit(segment.status.value)
    _save(viewer, out_dir / "napari-segment.png", app)
    viewer.close()
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "images")
