"""ONNX Runtime static INT8 quantization (QDQ) of an exported graph, for CPU deployment."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from contract import INPUT_NAME, PRECISION_KEY
from contract.files import replaced_on_success

from .calibration import calibration_batches

# The network (backbone, FPN, protonet, heads: from the first convolution to the final ones) is quantized
# whole: its convolutions and the ReLUs, residual and FPN additions, max-pool, upsampling and
# concatenations between them, so activations stay INT8 from one convolution to the next instead of
# being dequantized around every other op (onnxruntime fuses the additions into QLinearAdd, OpenVINO the
# quantize steps into its INT8 convolutions). What comes before (resize, mean subtraction) and after
# (softmax, box decoding, IoU, mask assembly, YOLACT++'s mask-IoU head on the assembled masks) stays FP32:
# INT8 there would move boxes and reorder scores. YOLACT++'s DeformConv has no INT8 kernel in onnxruntime and
# is not in the list, so it runs in FP32 between the quantized convolutions (its offset convolutions are
# ordinary Convs and are quantized).
QUANTIZED_OPS = ["Conv", "Relu", "Add", "MaxPool", "Resize", "Concat"]
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


def _consumers(nodes: list) -> dict[str, list[int]]:
    """Tensor name -> indices of the nodes that read it."""
    consumers: dict[str, list[int]] = {}
    for index, node in enumerate(nodes):
        for name in node.input:
            consumers.setdefault(name, []).append(index)
    return consumers


def _upstream_of(nodes: list, consumers: dict[str, list[int]], targets: list[bool]) -> list[bool]:
    """Per node: whether a target lies downstream of it. ONNX nodes are topologically sorted, so walking
    them backwards sees every consumer before its producer."""
    upstream = [False] * len(nodes)
    for index in reversed(range(len(nodes))):
        upstream[index] = any(targets[c] or upstream[c] for name in nodes[index].output for c in consumers.get(name, []))
    return upstream


# YOLACT++'s mask-IoU head reads the assembled masks: post-processing, not the network, though its convolutions
# are the graph's last. Both exporters keep the module path in the names (of the ONNX weight, of the OpenVINO op).
MASK_IOU_HEAD = "maskiou_net."


def _is_mask_iou_head(node) -> bool:
    """A convolution of YOLACT++'s mask-IoU head, known by its weight's name."""
    return len(node.input) > 1 and MASK_IOU_HEAD in node.input[1]


def _final_convolution_flags(nodes: list, consumers: dict[str, list[int]]) -> list[bool]:
    convolutions = [node.op_type == "Conv" and not _is_mask_iou_head(node) for node in nodes]
    feeds_conv = _upstream_of(nodes, consumers, convolutions)
    return [conv and not feeds for conv, feeds in zip(convolutions, feeds_conv)]


def final_convolutions(model) -> list:
    """The Conv nodes with no Conv downstream: the prediction heads' and the protonet's last layers, whose
    outputs are what the post-processing reads."""
    nodes = list(model.graph.node)
    return [node for node, final in zip(nodes, _final_convolution_flags(nodes, _consumers(nodes))) if final]


def network_nodes(model) -> list:
    """The first convolution, the final ones, and every node downstream of the first and upstream of a final."""
    nodes = list(model.graph.node)
    consumers = _consumers(nodes)
    first = next(index for index, node in enumerate(nodes) if node.op_type == "Conv")
    after_first = [index == first for index in range(len(nodes))]
    for index in range(first, len(nodes)):
        if after_first[index]:
            for c in (c for name in nodes[index].output for c in consumers.get(name, [])):
                after_first[c] = True
    final = _final_convolution_flags(nodes, consumers)
    feeds_final = _upstream_of(nodes, consumers, final)
    return [node for node, a, f, b in zip(nodes, after_first, final, feeds_final) if a and (f or b)]


def fold_input_scaling(model) -> bool:
    """Fold the normalisation's division and the BGR -> RGB flip in front of the first convolution into its
    weights (conv(flip(x / d)) = conv'(x) with w'[:, c] = w[:, C-1-c] / d[c]; zero padding stays zero), in
    place. In FP32 that would move results by rounding; here the convolution's input is quantized anyway,
    and onnxruntime, which runs INT8 convolutions channels-last, would otherwise divide and flip 3-channel
    pixels one by one. Returns whether the graph had that shape."""
    from onnx import numpy_helper

    nodes = list(model.graph.node)
    producers = {name: node for node in nodes for name in node.output}
    initializers = {i.name: i for i in model.graph.initializer}
    readers = _consumers(nodes)
    conv = next(node for node in nodes if node.op_type == "Conv")
    flip = producers.get(conv.input[0])
    divide = producers.get(flip.input[0]) if flip is not None else None
    if flip is None or divide is None or flip.op_type != "Slice" or divide.op_type != "Div":
        return False
    constant = [numpy_helper.to_array(initializers[name]) if name in initializers else None for name in flip.input[1:]]
    if len(constant) != 4 or any(c is None for c in constant) or divide.input[1] not in initializers:
        return False
    starts, ends, axes, steps = (c.tolist() for c in constant)
    weight = numpy_helper.to_array(initializers[conv.input[1]])
    channels = weight.shape[1]
    divisor = np.broadcast_to(numpy_helper.to_array(initializers[divide.input[1]]).reshape(-1), (channels,))
    is_flip = axes == [1] and steps == [-1] and starts == [-1] and ends[0] <= -channels - 1
    if not is_flip or len(readers[flip.output[0]]) != 1 or len(readers[divide.output[0]]) != 1:
        return False
    scaled = (weight[:, ::-1] / divisor[None, :, None, None]).astype(weight.dtype)
    initializers[conv.input[1]].CopyFrom(numpy_helper.from_array(scaled, conv.input[1]))
    conv.input[0] = divide.input[0]
    model.graph.node.remove(flip)
    model.graph.node.remove(divide)
    used = {name for node in model.graph.node for name in node.input}
    for unused in [i for i in model.graph.initializer if i.name not in used]:
        model.graph.initializer.remove(unused)
    return True


class _ImageReader:
    """onnxruntime's CalibrationDataReader protocol over uint8 image batches."""

    def __init__(self, files: list[Path]):
        self._batches = calibration_batches(files)

    def get_next(self) -> dict | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch}


def quantize_int8(
    onnx_path: str | os.PathLike, out: str | os.PathLike, files: list[Path], method: str = "minmax", keep_ends_fp32: bool = False
) -> Path:
    """Write a QDQ model of ``onnx_path`` to ``out``: per-channel symmetric INT8 weights, UINT8 activations
    calibrated on ``files`` by ``method`` (minmax, percentile or entropy); with ``keep_ends_fp32`` the first
    convolution and the final ones (heads, protonet output) stay FP32. The metadata is carried over."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method {method!r}: choose one of {', '.join(CALIBRATION_METHODS)}")
    folded = onnx.load(str(onnx_path))
    fold_input_scaling(folded)
    network = [node.name for node in network_nodes(folded) if node.op_type in QUANTIZED_OPS]
    excluded = []
    if keep_ends_fp32:
        convolutions = [node for node in folded.graph.node if node.op_type == "Conv"]
        excluded = [node.name for node in [convolutions[0], *final_convolutions(folded)]]
    recipe = f"{method} calibration on {len(files)} images" + (", first and final convolutions FP32" if keep_ends_fp32 else "")
    with replaced_on_success(out) as tmp:
        quantize_static(
            folded,
            str(tmp),
            _ImageReader(files),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=QUANTIZED_OPS,
            nodes_to_quantize=network,
            nodes_to_exclude=excluded,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method={
                "minmax": CalibrationMethod.MinMax,
                "percentile": CalibrationMethod.Percentile,
                "entropy": CalibrationMethod.Entropy,
            }[method],
        )
        quantized = onnx.load(str(tmp))
        props = {p.key: p.value for p in folded.metadata_props}
        props[PRECISION_KEY] = f"int8 (onnxruntime QDQ, the network from first to final convolution; {recipe})"
        onnx.helper.set_model_props(quantized, props)
        onnx.save(quantized, str(tmp))
    return Path(out)
