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


class _ImageReader:
    """onnxruntime's CalibrationDataReader protocol over uint8 image batches."""

    def __init__(self, files: list[Path]):
        self._batches = calibration_batches(files)

    def get_next(self) -> dict | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch}


def quantize_int8(onnx_path: str | os.PathLike, out: str | os.PathLike, files: list[Path]) -> Path:
    """Write a QDQ model of ``onnx_path`` to ``out``: per-channel symmetric INT8 weights, UINT8
    activations calibrated (min/max) on ``files``; the metadata is carried over."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    with atomic_path(out) as tmp:
        quantize_static(
            str(onnx_path),
            str(tmp),
            _ImageReader(files),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=QUANTIZED_OPS,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        quantized = onnx.load(str(tmp))
        source_props = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
        onnx.helper.set_model_props(quantized, {**source_props, "yolact.precision": "int8 (onnxruntime QDQ, Conv only)"})
        onnx.save(quantized, str(tmp))
    return Path(out)
