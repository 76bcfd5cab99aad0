"""cytoseg: Cellpose-style segmentation of microscopy images with a native engine.

A thin ctypes layer over libcytoseg's C API (bundled in this package); ONNX Runtime comes from
the ``onnxruntime`` pip package. No torch, no conda.

>>> import cytoseg, tifffile
>>> with cytoseg.Model("nuclei", device="cpu") as model:
...     labels = model.segment(tifffile.imread("nuclei.tif"), diameter=17)
>>> table = cytoseg.measure(labels)
"""

from ._errors import (
    CancelledError,
    CytosegError,
    CytosegIOError,
    FormatError,
    InternalError,
    InvalidArgumentError,
    ModelError,
    NonFiniteError,
    OnnxRuntimeError,
    ShapeMismatchError,
    TooLargeError,
)
from ._version import __version__
from .api import (
    DEFAULT_MODEL,
    Model,
    bundled_models,
    classifier_info,
    classify,
    engine_version,
    evaluate,
    example_image_path,
    flows_to_labels,
    image_qc,
    labels_to_flows,
    stitch_labels,
    list_models,
    measure,
    models_dir,
    qc_report,
    segment_folder,
    train,
    train_classifier,
    user_model_dir,
)

__all__ = [
    "DEFAULT_MODEL",
    "CancelledError",
    "CytosegError",
    "CytosegIOError",
    "FormatError",
    "InternalError",
    "InvalidArgumentError",
    "Model",
    "ModelError",
    "NonFiniteError",
    "OnnxRuntimeError",
    "ShapeMismatchError",
    "TooLargeError",
    "__version__",
    "bundled_models",
    "classifier_info",
    "classify",
    "engine_version",
    "evaluate",
    "example_image_path",
    "flows_to_labels",
    "image_qc",
    "labels_to_flows",
    "stitch_labels",
    "list_models",
    "measure",
    "qc_report",
    "segment_folder",
    "train",
    "train_classifier",
    "models_dir",
    "user_model_dir",
]
