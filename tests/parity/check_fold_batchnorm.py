"""Checks scripts/fold_batchnorm.py, the step before the int8 variants' quantization.

    python tests/parity/check_fold_batchnorm.py

1. Each bundled model's float network, prepared as quantize_model.py prepares it, folds every
   batch normalization and expands its 12 style vectors to rows, and the rewritten network's
   outputs match the original's on random inputs (relative difference < 1e-4, `verify`); the
   float layers are the input's two convolutions, the shift before one, and the last
   convolution.
   For the nuclei network, a quantized copy whose Shape nodes are moved onto the quantized
   tensors gives exactly the outputs of the one before the move.
2. Small hand-built graphs: a batch normalization with a negative scale before a ReLU, one
   before a padded convolution, and one whose convolution shares its weights stay as they
   are; a positive one before ReLU → conv becomes a depthwise shift; outputs match.
Prints one line per check and exits non-zero on the first failure.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization.shape_inference import quant_pre_process

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import fold_batchnorm  # noqa: E402


def bundled(tmp: Path) -> None:
    for name in ("nuclei", "cells-phase", "nuclei-histo"):
        pkg = ROOT / "models" / name
        pre = tmp / f"{name}_pre.onnx"
        quant_pre_process(str(pkg / "model.onnx"), str(pre), skip_symbolic_shape=True)
        net = onnx.load(str(pre))
        inp = net.graph.input[0]
        channels = inp.type.tensor_type.shape.dim[1].dim_value
        stats = fold_batchnorm.fold(net)
        rows = fold_batchnorm.style_rows(net)
        assert rows == 12, (name, rows)
        folded = tmp / f"{name}_folded.onnx"
        onnx.save(net, str(folded))
        assert stats.get("kept", 0) == 0 and sum(stats.values()) == 33, (name, stats)
        left = [n for n in net.graph.node if n.op_type == "BatchNormalization"]
        assert not left, (name, [n.name for n in left])
        rng = np.random.default_rng(1)
        for shape in ((1, channels, 256, 256), (2, channels, 128, 192)):
            x = (rng.random(shape, dtype=np.float32) * 1.5 - 0.2).astype(np.float32)
            diff = fold_batchnorm.verify(str(pre), str(folded), x, inp.name)
            assert diff < 1e-4, (name, shape, diff)
        float_nodes = fold_batchnorm.first_and_last_layer(net)
        convs = [n.name for n in net.graph.node if n.op_type == "Conv"]
        assert float_nodes[-1] == convs[-1] and len(float_nodes) == 4, (name, float_nodes)
        assert float_nodes[0].endswith(fold_batchnorm.SHIFT_SUFFIX), float_nodes
        print(f"ok {name}: {dict(stats)}, {rows} style rows; max relative difference "
              f"{diff:.1e}; float: {len(float_nodes)} nodes")
        if name == "nuclei":
            quantized_shapes(tmp, folded, float_nodes, inp.name, channels)


def quantized_shapes(tmp: Path, folded: Path, float_nodes: list[str], name: str,
                     channels: int) -> None:
    import onnxruntime as ort
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    rng = np.random.default_rng(5)
    batches = iter([{name: rng.random((1, channels, 64, 64), dtype=np.float32)} for _ in range(2)])

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(batches, None)

    q = tmp / "quantized.onnx"
    quantize_static(str(folded), str(q), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, nodes_to_exclude=float_nodes)
    model = onnx.load(str(q))
    moved = fold_batchnorm.shapes_of_quantized(model)
    assert moved == 12, moved
    q2 = tmp / "quantized_moved.onnx"
    onnx.save(model, str(q2))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    x = {name: rng.random((2, channels, 96, 128), dtype=np.float32)}
    a, b = (ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"]).run(None, x)
            for p in (q, q2))
    for u, v in zip(a, b):
        assert np.array_equal(u, v), float(np.abs(u - v).max())
    print(f"ok nuclei quantized: {moved} Shape nodes on quantized tensors, same outputs")


def init(name: str, a: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(a.astype(np.float32), name)


def small(tmp: Path, gamma0: float, pad: int, shared: bool) -> tuple[onnx.ModelProto, Path]:
    """x → Conv3×3 → BN → ReLU → Conv(k, pads) [→ Conv reusing the weights when `shared`]."""
    rng = np.random.default_rng(0)
    c = 4
    k = 3 if pad else 1
    gamma = rng.random(c) + 0.5
    gamma[0] = gamma0
    inits = [init("w0", rng.standard_normal((c, 1, 3, 3))), init("b0", rng.standard_normal(c)),
             init("g", gamma), init("be", rng.standard_normal(c)),
             init("m", rng.standard_normal(c)), init("v", rng.random(c) + 0.1),
             init("w1", rng.standard_normal((2, c, k, k))), init("b1", rng.standard_normal(2))]
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["h"], name="c0", pads=[1] * 4),
             helper.make_node("BatchNormalization", ["h", "g", "be", "m", "v"], ["n"], name="bn"),
             helper.make_node("Relu", ["n"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w1", "b1"], ["y"], name="c1", pads=[pad] * 4)]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None, None, None])]
    if shared:
        nodes.append(helper.make_node("Conv", ["r", "w1"], ["z"], name="c2", pads=[pad] * 4))
        outputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [None, None, None, None]))
    graph = helper.make_graph(nodes, "small", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [None, 1, None, None])], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp / f"small_{gamma0}_{pad}_{shared}.onnx"
    onnx.save(model, str(path))
    return model, path


def small_graphs(tmp: Path) -> None:
    x = np.random.default_rng(2).standard_normal((1, 1, 20, 24)).astype(np.float32)
    cases = [  # gamma of channel 0, padding of the second conv, shared weights → expected
        (0.7, 1, False, "shift as a depthwise 1x1 convolution"),
        (-0.7, 1, False, "kept"),
        (0.7, 1, True, "kept"),
    ]
    for gamma0, pad, shared, expected in cases:
        model, path = small(tmp, gamma0, pad, shared)
        stats = fold_batchnorm.fold(model)
        assert dict(stats) == {expected: 1}, (gamma0, pad, shared, stats)
        folded = tmp / f"folded_{path.name}"
        onnx.save(model, str(folded))
        diff = fold_batchnorm.verify(str(path), str(folded), x, "x")
        print(f"ok gamma0={gamma0} pad={pad} shared={shared}: {expected}, difference {diff:.1e}")
    # a BN straight into a 1×1 convolution without padding folds into it; with padding it stays
    for pad, expected in ((0, "into 1x1 convolution"), (1, "kept")):
        rng = np.random.default_rng(3)
        c = 3
        inits = [init("g", rng.random(c) + 0.5), init("be", rng.standard_normal(c)),
                 init("m", rng.standard_normal(c)), init("v", rng.random(c) + 0.1),
                 init("w", rng.standard_normal((2, c, 1, 1)))]
        nodes = [helper.make_node("BatchNormalization", ["x", "g", "be", "m", "v"], ["n"]),
                 helper.make_node("Conv", ["n", "w"], ["y"], pads=[pad] * 4)]
        graph = helper.make_graph(nodes, "one", [helper.make_tensor_value_info(
            "x", TensorProto.FLOAT, [None, c, None, None])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None, None, None])], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        path = tmp / f"one_{pad}.onnx"
        onnx.save(model, str(path))
        stats = fold_batchnorm.fold(model)
        assert dict(stats) == {expected: 1}, (pad, stats)
        folded = tmp / f"folded_one_{pad}.onnx"
        onnx.save(model, str(folded))
        xc = np.random.default_rng(4).standard_normal((1, c, 9, 7)).astype(np.float32)
        diff = fold_batchnorm.verify(str(path), str(folded), xc, "x")
        print(f"ok BN → 1×1 conv pads={pad}: {expected}, difference {diff:.1e}")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        small_graphs(Path(tmp))
        bundled(Path(tmp))
    print("fold_batchnorm: all checks passed")


if __name__ == "__main__":
    main()
