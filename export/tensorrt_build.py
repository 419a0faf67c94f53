"""TensorRT 10 engine from an exported ONNX file: parse, optimisation profile, FP16/INT8, timing cache, the
engine written atomically with a JSON sidecar."""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract import INPUT_SIZE_KEY, TRT_PROFILE_MAX_SIDE, TRT_PROFILE_MIN_SIDE
from contract.files import write_bytes, write_text

from .calibration import calibration_batches
from .onnx_export import ExportError, ExportFailed, read_metadata

WORKSPACE_BYTES = 4 << 30
CALIBRATION_BATCH = 8
INSTALL_HINT = (
    "TensorRT is not installed (import tensorrt failed): on a machine with an NVIDIA GPU run "
    "`pip install tensorrt-cu12` (TensorRT 10), or export with --to onnx"
)


def import_tensorrt() -> Any:
    """The tensorrt module, or an ExportError saying how to install it."""
    try:
        import tensorrt
    except ImportError:
        raise ExportError(INSTALL_HINT) from None
    return tensorrt


@dataclass(frozen=True)
class BatchRange:
    """--batch MIN:OPT:MAX."""

    min: int
    opt: int
    max: int

    @classmethod
    def parse(cls, text: str) -> "BatchRange":
        try:
            low, opt, high = (int(v) for v in text.split(":"))
        except ValueError:
            raise ExportError(f"--batch {text!r}: expected MIN:OPT:MAX, e.g. 1:4:8") from None
        if not 1 <= low <= opt <= high:
            raise ExportError(f"--batch {text!r}: needs 1 <= MIN <= OPT <= MAX")
        return cls(low, opt, high)


def profile_shapes(input_shape: tuple[int, ...], batch: BatchRange, size: int) -> tuple[tuple[int, ...], ...]:
    """(min, opt, max) shapes of the [B, H, W, 3] input; dynamic H/W span
    TRT_PROFILE_MIN_SIDE..TRT_PROFILE_MAX_SIDE (the graph resizes internally), optimised for the network size."""
    _, height, width, channels = input_shape
    shapes = []
    for b, side in ((batch.min, TRT_PROFILE_MIN_SIDE), (batch.opt, size), (batch.max, TRT_PROFILE_MAX_SIDE)):
        shapes.append((b, height if height > 0 else side, width if width > 0 else side, channels))
    return tuple(shapes)


def keep_sensitive_layers_fp32(trt: Any, network: Any) -> int:
    """Pin box decoding's exp, the softmax and the sigmoids to FP32 under --fp16 (FP16 exp overflows past
    ~11, and softmax/sigmoid feed the score threshold and the NMS ordering). Returns how many were pinned."""
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type == trt.LayerType.UNARY:
            layer.__class__ = trt.IUnaryLayer  # the Python API's way to reach a layer's subtype fields
            sensitive = layer.op == trt.UnaryOperation.EXP
        elif layer.type == trt.LayerType.ACTIVATION:
            layer.__class__ = trt.IActivationLayer
            sensitive = layer.type == trt.ActivationType.SIGMOID
        else:
            sensitive = layer.type == trt.LayerType.SOFTMAX
        if sensitive:
            layer.precision = trt.float32
            layer.set_output_type(0, trt.float32)
            pinned += 1
    return pinned


class _EntropyCalibrator:
    """Factory for an IInt8EntropyCalibrator2 over uint8 image batches, device buffers held by torch."""

    @staticmethod
    def create(trt: Any, files: list[Path], size: int, cache_path: Path) -> Any:
        import torch

        class Calibrator(trt.IInt8EntropyCalibrator2):
            def __init__(self):
                super().__init__()
                self.batches = calibration_batches(files, CALIBRATION_BATCH, size)
                self.device_batch = None

            def get_batch_size(self) -> int:
                return CALIBRATION_BATCH

            def get_batch(self, names: list[str]) -> list[int] | None:
                batch = next(self.batches, None)
                if batch is None or len(batch) < CALIBRATION_BATCH:
                    return None
                self.device_batch = torch.from_numpy(batch).cuda()
                return [self.device_batch.data_ptr()]

            def read_calibration_cache(self) -> bytes | None:
                return cache_path.read_bytes() if cache_path.is_file() else None

            def write_calibration_cache(self, cache: bytes) -> None:
                write_bytes(cache_path, bytes(cache))

        return Calibrator()


def _parse(trt: Any, builder: Any, logger: Any, onnx_path: Path) -> Any:
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
        raise ExportFailed(f"TensorRT cannot parse {onnx_path}: {errors}")
    return network, parser


def _has_qdq(trt: Any, network: Any) -> bool:
    return any(network.get_layer(i).type in (trt.LayerType.QUANTIZE, trt.LayerType.DEQUANTIZE) for i in range(network.num_layers))


def _load_timing_cache(config: Any, path: Path) -> Any:
    cache = config.create_timing_cache(path.read_bytes() if path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def build_engine(
    onnx_path: str | os.PathLike,
    out: str | os.PathLike,
    batch: BatchRange,
    fp16: bool = False,
    int8: bool = False,
    calib_files: list[Path] | None = None,
    timing_cache: str | os.PathLike | None = None,
) -> Path:
    """Build and write a serialized engine for ``onnx_path``; INT8 uses the graph's own Q/DQ nodes when it
    has them, else entropy calibration on ``calib_files``. Returns the engine path."""
    trt = import_tensorrt()
    onnx_path, out = Path(onnx_path), Path(out)
    metadata = read_metadata(onnx_path)
    size = json.loads(metadata[INPUT_SIZE_KEY])[0]
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, _parser = _parse(trt, builder, logger, onnx_path)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)

    image_input = network.get_input(0)
    shapes = profile_shapes(tuple(image_input.shape), batch, size)
    profile = builder.create_optimization_profile()
    profile.set_shape(image_input.name, *shapes)
    config.add_optimization_profile(profile)

    pinned = 0
    if fp16 or int8:
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        pinned = keep_sensitive_layers_fp32(trt, network)
    quantization = None
    if int8:
        config.set_flag(trt.BuilderFlag.INT8)
        if _has_qdq(trt, network):
            quantization = "explicit Q/DQ from the ONNX graph"
        else:
            if not calib_files:
                raise ExportError("--int8 needs calibration images (--calib DIR) or a graph with Q/DQ nodes")
            calib_profile = builder.create_optimization_profile()
            fixed = (CALIBRATION_BATCH, size, size, 3)
            calib_profile.set_shape(image_input.name, fixed, fixed, fixed)
            config.set_calibration_profile(calib_profile)
            config.int8_calibrator = _EntropyCalibrator.create(trt, calib_files, size, out.with_suffix(".calib.cache"))
            quantization = f"entropy calibration on {len(calib_files)} images"

    cache_path = Path(timing_cache) if timing_cache else out.with_suffix(".timing.cache")
    cache = _load_timing_cache(config, cache_path)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportFailed("TensorRT failed to build the engine (its log above says why)")
    write_bytes(out, bytes(serialized))
    write_bytes(cache_path, bytes(cache.serialize()))

    precision = "int8" if int8 else "fp16" if fp16 else "fp32"
    sidecar = {
        "engine": out.name,
        "onnx": onnx_path.name,
        "tensorrt_version": trt.__version__,
        "gpu": _gpu_name(),
        "precision": precision,
        "fp32_pinned_layers": pinned,
        "int8_quantization": quantization,
        "profile": {"input": image_input.name, "min": shapes[0], "opt": shapes[1], "max": shapes[2]},
        "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "onnx_metadata": metadata,
    }
    write_text(out.with_suffix(out.suffix + ".json"), json.dumps(sidecar, indent=2))
    return out


def _gpu_name() -> str:
    try:
        import torch

        return torch.cuda.get_device_name(0)
    except Exception:  # no torch CUDA build or no device: the sidecar still gets written
        return "unknown"
