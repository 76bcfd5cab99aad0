"""Builds tests/fixtures/models/blobs: a tiny hand-designed Cellpose-style ONNX network for tests.

One 11x11 convolution, 1 -> 3 channels: dY and dX are the gradient of a Gaussian-blurred image
(flows point uphill, towards bright nucleus centres), cellprob is the blurred intensity minus a
threshold. It segments bright blobs plausibly, is a few KB, and exercises the engine's whole
pipeline (normalization, resizing, tiling and blending, flows -> labels) without the trained model.

    python tests/parity/make_test_model.py
"""
import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

out = Path(__file__).resolve().parents[1] / "fixtures" / "models" / "blobs"
out.mkdir(parents=True, exist_ok=True)

k = 11
r = np.arange(k) - k // 2
g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 2.0 ** 2))
g /= g.sum()
dy = np.zeros_like(g)
dx = np.zeros_like(g)
# Central differences of the blur kernel: conv(x, dy) = d/dy (blur * x).
dy[1:-1, :] = (g[:-2, :] - g[2:, :]) / 2
dx[:, 1:-1] = (g[:, :-2] - g[:, 2:]) / 2
w = np.stack([60.0 * dy, 60.0 * dx, 12.0 * g])[:, None].astype(np.float32)  # (3, 1, 11, 11)
b = np.array([0.0, 0.0, -12.0 * 0.3], np.float32)

node = helper.make_node("Conv", ["image", "w", "b"], ["flows"], pads=[5, 5, 5, 5], kernel_shape=[k, k])
graph = helper.make_graph(
    [node], "blobs",
    [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, "H", "W"])],
    [helper.make_tensor_value_info("flows", TensorProto.FLOAT, ["N", 3, "H", "W"])],
    [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="cytoseg-tests")
model.ir_version = 8
onnx.checker.check_model(model)
path = out / "model.onnx"
onnx.save(model, str(path))
manifest = {
    "format_version": 1,
    "name": "blobs",
    "version": "0.0.1",
    "family": "cellpose-flows",
    "description": "Test network: blurred-intensity gradient flows, for engine tests only.",
    "model": {"file": "model.onnx", "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
              "bytes": path.stat().st_size, "opset": 17},
    "input": {"name": "image", "axes": "NCHW", "channels": 1, "dtype": "float32",
              "dynamic_axes": ["N", "H", "W"], "size_multiple": 16, "padding": "zeros"},
    "normalization": {"method": "percentile", "low": 1.0, "high": 99.0, "per_channel": True,
                      "per_image": True, "percentile_interpolation": "linear", "min_range": 1e-3,
                      "clip": False},
    "diameter": 17.0,
    "diameter_method": "chosen for the DSB2018 nuclei",
    "tiling": {"tile_size": 128, "overlap": 0.1},
    "output": {"name": "flows", "axes": "NCHW", "channels": ["dY", "dX", "cellprob"],
               "flow_scale": 5.0, "cellprob": "logit"},
    "mask_defaults": {"cellprob_threshold": 0.0, "flow_threshold": 0.4, "niter": 200,
                      "min_size": 15, "max_size_fraction": 0.4},
    "license": "MIT OR Apache-2.0",
    "training_data": {"name": "none (hand-designed weights)"},
}
(out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
print(f"wrote {path} ({path.stat().st_size} bytes) and manifest.json")
