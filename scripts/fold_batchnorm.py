"""Folds the batch normalizations of a Cellpose-style network into its other layers, for int8.

Cellpose's blocks run BatchNorm → ReLU → Conv. ONNX Runtime fuses a batch normalization only
into a convolution *before* it, so in the float network these stay separate, and in a
quantized (QDQ) network each one runs in float between a DequantizeLinear and a
QuantizeLinear: on the nuclei model that was a third of the int8 network's time. This module
rewrites them, in float and with the same function (checked by `verify`), into layers the
quantized network runs in int8:

1. a batch normalization whose every consumer is a 1×1 convolution without padding: its scale
   and shift go into those convolutions' weights and biases (exact);
2. a batch normalization followed by a ReLU whose every consumer is a convolution, with every
   channel's scale a > 0: relu(a·x + c) = a·relu(x + c/a), so a goes into the convolutions'
   input-channel weights (exact with zero padding) and the shift c/a
   - into the bias of the style vector's Gemm where the normalized tensor is
     `x + unsqueeze(unsqueeze(gemm))` used by nothing else (Cellpose's style addition), or
   - into a depthwise 1×1 convolution (weights 1, bias c/a): a per-channel addition that
     ONNX Runtime runs as a quantized convolution (its broadcast Add is slow in the
     channels-last layout of quantized networks);
3. anything else stays a batch normalization.

Two more rewrites for ONNX Runtime's quantized network: `style_rows` expands each style vector
to a row before it is added (a broadcast over a row instead of over every pixel: 18 → 2 ms per
2 × 512² × 16 addition), and `shapes_of_quantized`, after quantization, points the Shape nodes
that row expansion reads at the quantized tensors, so that nothing is dequantized for its shape.

The float network the engine ships (`model.onnx`) is never changed: only the int8 variant is
built from the folded copy.
"""
from __future__ import annotations

import collections

import numpy as np
import onnx
from onnx import helper, numpy_helper

SHIFT_SUFFIX = "_bn_shift"


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def fold(model: onnx.ModelProto) -> collections.Counter:
    """Rewrites `model` in place; returns how many batch normalizations took each way."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    consumers = collections.defaultdict(list)
    for n in g.node:
        for i in n.input:
            consumers[i].append(n)
    uses = collections.Counter(i for n in g.node for i in n.input)
    outputs = {o.name for o in g.output}

    def arr(name: str) -> np.ndarray:
        return numpy_helper.to_array(inits[name]).astype(np.float64)

    def put(name: str, value: np.ndarray) -> None:
        inits[name].CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))

    def add_init(name: str, value: np.ndarray) -> str:
        g.initializer.append(numpy_helper.from_array(value.astype(np.float32), name))
        inits[name] = g.initializer[-1]
        return name

    def own_conv(node: onnx.NodeProto, tensor: str, one_by_one: bool) -> bool:
        """A plain convolution of `tensor` whose weights nothing else uses."""
        if node.op_type != "Conv" or node.input[0] != tensor or node.input[1] not in inits:
            return False
        if uses[node.input[1]] != 1 or (len(node.input) > 2 and uses[node.input[2]] != 1):
            return False
        a = _attrs(node)
        if a.get("group", 1) != 1:
            return False
        if one_by_one:
            return arr(node.input[1]).shape[2:] == (1, 1) and not any(a.get("pads", []))
        return True

    def style_gemm(tensor: str) -> onnx.NodeProto | None:
        """The Gemm of `tensor` = x + unsqueeze(unsqueeze(gemm)), where nothing else uses
        the sum, the unsqueezed vectors or the Gemm's bias."""
        add = producer.get(tensor)
        if add is None or add.op_type != "Add" or uses[tensor] != 1:
            return None
        for side in add.input:
            node, chain = producer.get(side), 0
            while node is not None and node.op_type == "Unsqueeze" and uses[node.output[0]] == 1:
                node, chain = producer.get(node.input[0]), chain + 1
            if (node is not None and node.op_type == "Gemm" and chain and
                    uses[node.output[0]] == 1 and len(node.input) > 2 and
                    node.input[2] in inits and uses[node.input[2]] == 1):
                return node
        return None

    removed, stats, new_nodes = set(), collections.Counter(), {}
    for bn in list(g.node):
        if bn.op_type != "BatchNormalization":
            continue
        if len(bn.output) > 1 or not all(i in inits for i in bn.input[1:5]):
            stats["kept"] += 1
            continue
        eps = _attrs(bn).get("epsilon", 1e-5)
        gamma, beta, mean, var = (arr(i) for i in bn.input[1:5])
        scale = gamma / np.sqrt(var + eps)
        shift = beta - scale * mean
        x, y = bn.input[0], bn.output[0]
        after = consumers[y]
        if y in outputs or not after:
            stats["kept"] += 1
            continue
        if all(own_conv(c, y, True) for c in after):
            for conv in after:
                w = arr(conv.input[1])
                b = arr(conv.input[2]) if len(conv.input) > 2 else np.zeros(w.shape[0])
                put(conv.input[1], w * scale[None, :, None, None])
                bias = b + (w[:, :, 0, 0] * shift[None, :]).sum(1)
                if len(conv.input) > 2:
                    put(conv.input[2], bias)
                else:
                    conv.input.append(add_init(conv.input[1] + "_bn_bias", bias))
                conv.input[0] = x
            removed.add(id(bn))
            stats["into 1x1 convolution"] += 1
            continue
        relu = after[0] if len(after) == 1 and after[0].op_type == "Relu" else None
        if relu is None or relu.output[0] in outputs or not np.all(scale > 0):
            stats["kept"] += 1
            continue
        convs = consumers[relu.output[0]]
        if not convs or not all(own_conv(c, relu.output[0], False) for c in convs):
            stats["kept"] += 1
            continue
        for conv in convs:
            put(conv.input[1], arr(conv.input[1]) * scale[None, :, None, None])
        gemm = style_gemm(x)
        if gemm is not None:
            beta_g = _attrs(gemm).get("beta", 1.0)
            put(gemm.input[2], arr(gemm.input[2]) + shift / scale / beta_g)
            relu.input[0] = x
            removed.add(id(bn))
            stats["shift into the style vector"] += 1
            continue
        channels = scale.size
        dw = helper.make_node(
            "Conv",
            [x, add_init(bn.name + SHIFT_SUFFIX + "_w", np.ones((channels, 1, 1, 1))),
             add_init(bn.name + SHIFT_SUFFIX + "_b", shift / scale)],
            [y], name=bn.name + SHIFT_SUFFIX, group=channels, kernel_shape=[1, 1])
        new_nodes[id(bn)] = dw
        stats["shift as a depthwise 1x1 convolution"] += 1

    nodes = []
    for n in g.node:
        if id(n) in new_nodes:
            nodes.append(new_nodes[id(n)])
        elif id(n) not in removed:
            nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    used = {i for n in g.node for i in n.input}
    live = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(live)
    onnx.checker.check_model(model)
    return stats


def first_and_last_layer(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes to keep in float: the convolutions of the network's input, with the
    folded shifts before them (the input's intensities), and the last convolution (the flows'
    precision). Quantizing the input's 1×1 projection as well made the nuclei network ~5 %
    faster (its first residual sum and max-pool run in uint8 then) but cost 0.0017 AP@0.5 on
    its validation split (0.8541 against 0.8558): not done."""
    g = model.graph
    frontier, names = {i.name for i in g.input}, []
    for n in g.node:
        if n.input and n.input[0] in frontier:
            if n.op_type == "Conv":
                names.append(n.name)
            if n.op_type == "Relu" or n.name.endswith(SHIFT_SUFFIX):
                frontier.update(n.output)
    convs = [n.name for n in g.node if n.op_type == "Conv"]
    if convs and convs[-1] not in names:
        names.append(convs[-1])
    return names


def style_rows(model: onnx.ModelProto) -> int:
    """Expands each style vector added to an activation, `x + unsqueeze(unsqueeze(gemm))`, from
    [N, C, 1, 1] to one row, [N, C, 1, W] (W read from x's shape), before the addition: the same
    sum, but ONNX Runtime's quantized broadcast Add then works a row at a time instead of a
    pixel at a time. Returns how many additions it changed."""
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    names = {i.name for i in g.initializer}
    consts = {"style_rows_ones": np.array([1, 1, 1], np.int64),
              "style_rows_from": np.array([3], np.int64),
              "style_rows_to": np.array([4], np.int64)}
    nodes, changed = [], 0
    for n in g.node:
        if n.op_type == "Add" and len(n.input) == 2:
            for k, side in enumerate(n.input):
                p = producer.get(side)
                if p is None or p.op_type != "Unsqueeze":
                    continue
                x, base = n.input[1 - k], n.name + "_style_row"
                nodes += [
                    helper.make_node("Shape", [x], [base + "_shape"], name=base + "_shape"),
                    helper.make_node("Slice", [base + "_shape", "style_rows_from", "style_rows_to"],
                                     [base + "_w"], name=base + "_w"),
                    helper.make_node("Concat", ["style_rows_ones", base + "_w"],
                                     [base + "_dims"], name=base + "_dims", axis=0),
                    helper.make_node("Expand", [side, base + "_dims"], [base], name=base),
                ]
                n.input[k] = base
                changed += 1
                break
        nodes.append(n)
    if changed:
        for name, value in consts.items():
            if name not in names:
                g.initializer.append(numpy_helper.from_array(value, name))
        del g.node[:]
        g.node.extend(nodes)
        onnx.checker.check_model(model)
    return changed


def shapes_of_quantized(model: onnx.ModelProto) -> int:
    """In a quantized network, points each Shape that reads a DequantizeLinear's output at the
    quantized tensor instead (same shape), so that no activation is dequantized only for its
    shape. Returns how many it moved."""
    producer = {o: n for n in model.graph.node for o in n.output}
    moved = 0
    for n in model.graph.node:
        p = producer.get(n.input[0]) if n.op_type == "Shape" else None
        if p is not None and p.op_type == "DequantizeLinear":
            n.input[0] = p.input[0]
            moved += 1
    return moved


def verify(original: str, folded: str, sample: np.ndarray, input_name: str) -> float:
    """Largest difference between the two float networks' outputs on `sample`, relative to
    the largest output; raises when it is over 1e-4."""
    import onnxruntime as ort  # noqa: PLC0415

    so = ort.SessionOptions()
    so.log_severity_level = 3
    runs = [ort.InferenceSession(p, so, providers=["CPUExecutionProvider"]).run(
        None, {input_name: sample}) for p in (original, folded)]
    worst = 0.0
    for a, b in zip(*runs):
        worst = max(worst, float(np.abs(a - b).max() / max(1.0, np.abs(a).max())))
    if worst > 1e-4:
        raise SystemExit(f"fold_batchnorm.py: the folded network differs from the original "
                         f"by {worst:.2e} (relative); not quantizing it")
    return worst
