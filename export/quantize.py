"""ONNX Runtime static INT8 quantization (QDQ) of an exported graph, for CPU deployment."""

from __future__ import annotations

import os
from pathlib import Path

from yolact.fileio import atomic_path

from .calibration import calibration_batches
from .onnx_export import INPUT_NAME

# Only the convolutions (backbone, FPN, protonet, heads: nearly all the compute) are quantized; the
# post-processing (softmax, box decoding, IoU, mask assembly) stays FP32, where INT8 would move boxes and
# reorder scores.
QUANTIZED_OPS = ["Conv"]
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


def final_convolutions(model) -> list:
    """The Conv nodes with no Conv downstream: the prediction heads' and the protonet's last layers, whose
    outputs are what the post-processing reads."""
    nodes = list(model.graph.node)
    consumers: dict[str, list[int]] = {}
    for index, node in enumerate(nodes):
        for name in node.input:
            consumers.setdefault(name, []).append(index)
    # ONNX nodes are topologically sorted: walking them backwards sees every consumer before its producer.
    feeds_conv = [False] * len(nodes)
    for index in reversed(range(len(nodes))):
        feeds_conv[index] = any(
            nodes[c].op_type == "Conv" or feeds_conv[c] for name in nodes[index].output for c in consumers.get(name, [])
        )
    return [node for index, node in enumerate(nodes) if node.op_type == "Conv" and not feeds_conv[index]]


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
    source = onnx.load(str(onnx_path))
    excluded = []
    if keep_ends_fp32:
        convolutions = [node for node in source.graph.node if node.op_type == "Conv"]
        excluded = [node.name for node in [convolutions[0], *final_convolutions(source)]]
    recipe = f"{method} calibration on {len(files)} images" + (", first and final convolutions FP32" if keep_ends_fp32 else "")
    with atomic_path(out) as tmp:
        quantize_static(
            str(onnx_path),
            str(tmp),
            _ImageReader(files),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=QUANTIZED_OPS,
            nodes_to_exclude=excluded,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                              "entropy": CalibrationMethod.Entropy}[method],
        )
        quantized = onnx.load(str(tmp))
        source_props = {p.key: p.value for p in source.metadata_props}
        onnx.helper.set_model_props(quantized, {**source_props, "yolact.precision": f"int8 (onnxruntime QDQ, Conv only; {recipe})"})
        onnx.save(quantized, str(tmp))
    return Path(out)
