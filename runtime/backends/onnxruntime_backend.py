"""onnxruntime: the exported ``.onnx`` on the best execution providers installed."""

from __future__ import annotations

import ctypes
import importlib.util
import os
import re
from pathlib import Path

import numpy as np

from ..detections import RawOutputs
from ..errors import ModelError, one_line
from contract import INPUT_NAME, OUTPUT_NAMES

from .base import Backend, check_outputs, import_library, static_dims

TENSORRT_EP, CUDA_EP, OPENVINO_EP, CPU_EP = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "OpenVINOExecutionProvider",
    "CPUExecutionProvider",
)
DEVICES = "cpu, cuda, cuda:N or auto"
# The first onnxruntime with a DeformConv kernel (ONNX opset 19), which YOLACT++ graphs use; also in the
# pyproject files. 1.24.4 answers "Could not find an implementation for DeformConv(19)".
MIN_ONNXRUNTIME = "1.25"
# What onnxruntime says when the graph uses an op version or an opset newer than it implements.
MISSING_KERNEL = re.compile(r"Could not find an implementation for (\w+)\((\d+)\)")
NEWER_OPSET = re.compile(r"Opset (\d+) is under development.*?support for domain (\S+) is till opset (\d+)", re.S)


def engine_cache_folder() -> Path:
    """Where the TensorRT provider keeps the engines it builds (building one takes minutes)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "yolact-runtime" / "onnxruntime-tensorrt"


def provider_order(device: str, precision: str | None, available: list[str]) -> list[tuple[str, dict]]:
    """(provider, options) in preference order for ``device``, keeping only the ``available`` ones.

    auto: TensorRT, CUDA, OpenVINO, CPU; cuda[:N]: TensorRT, CUDA (CPU for what they do not run); cpu: CPU.
    The TensorRT provider computes in FP16 unless fp32 is asked for.
    """
    if device == "cpu":
        wanted = [(CPU_EP, {})]
    elif device == "auto" or device == "cuda" or device.startswith("cuda:"):
        index = device.partition(":")[2] or "0"
        if not index.isdigit():
            raise ModelError(f"device {device!r}: onnxruntime takes {DEVICES}")
        gpu_options = {"device_id": int(index)}
        tensorrt_options = {
            **gpu_options,
            "trt_fp16_enable": precision != "fp32",
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(engine_cache_folder()),
        }
        # The CUDA provider rounds convolutions to TF32 on Ampere and later unless told not to.
        cuda_options = {**gpu_options, "use_tf32": 0} if precision == "fp32" else gpu_options
        wanted = [(TENSORRT_EP, tensorrt_options), (CUDA_EP, cuda_options)]
        if device == "auto":
            wanted.append((OPENVINO_EP, {"device_type": "CPU", "precision": "FP32"}))
        elif not any(name in available for name, _ in wanted):
            raise ModelError(f"device {device}: this onnxruntime has no CUDA or TensorRT provider (pip install onnxruntime-gpu)")
        wanted.append((CPU_EP, {}))
    else:
        raise ModelError(f"device {device!r}: onnxruntime takes {DEVICES}")
    return [(name, options) for name, options in wanted if name in available]


def tensorrt_loadable() -> bool:
    """Whether TensorRT 10's runtime can load here. onnxruntime-gpu lists its TensorRT provider whether or not
    TensorRT is installed, and a session asked for it without TensorRT prints a page of errors before falling
    back to CUDA (seen on an H200 with onnxruntime-gpu 1.31)."""
    if importlib.util.find_spec("tensorrt_libs") or importlib.util.find_spec("tensorrt"):
        return True
    for library in ("libnvinfer.so.10", "nvinfer_10.dll"):
        try:
            ctypes.CDLL(library)
            return True
        except OSError:
            continue
    return False


def unsupported_by_this_version(message: str) -> str | None:
    """What an onnxruntime load error says this onnxruntime lacks (an op version, an opset), or None when
    the error is about something else."""
    if found := MISSING_KERNEL.search(message):
        return f"it has no kernel for {found[1]}-{found[2]}"
    if found := NEWER_OPSET.search(message):
        return f"the graph is {found[2]} opset {found[1]}, it implements up to opset {found[3]}"
    return None


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, model: Path, device: str | None, precision: str | None, threads: int | None):
        ort = import_library("onnxruntime", self.name, "pip install onnxruntime, or onnxruntime-gpu for CUDA")
        available = [name for name in ort.get_available_providers() if name != TENSORRT_EP or tensorrt_loadable()]
        providers = provider_order(device or "auto", precision, available)
        runs_fp16 = any(name == TENSORRT_EP for name, _ in providers) and precision != "fp32"
        if precision not in (None, "fp32") and not (precision == "fp16" and runs_fp16):
            raise ModelError(
                f"precision {precision}: onnxruntime runs the graph in fp32 here (fp16 needs its TensorRT provider); "
                "use backend openvino for fp16/bf16 on a CPU"
            )
        gpu_providers = {TENSORRT_EP, CUDA_EP} & {name for name, _ in providers}
        if gpu_providers and hasattr(ort, "preload_dlls"):
            # CUDA and cuDNN from their pip packages (onnxruntime-gpu[cuda,cudnn], or PyTorch's); without them the
            # providers fail to load and onnxruntime silently runs on the CPU.
            ort.preload_dlls()
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        # Idle intra-op threads otherwise spin for work and hold the cores that everything beside the graph
        # needs (the paste, a server's request handling, its clients, a second instance); waking them costs
        # microseconds per node against convolutions of milliseconds.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(model), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own pybind types for a bad or foreign file
            too_old = unsupported_by_this_version(str(exc))
            if too_old:
                raise ModelError(
                    f"{model}: onnxruntime {ort.__version__} cannot run it ({too_old}); graphs of python -m export need "
                    f"onnxruntime >= {MIN_ONNXRUNTIME} (YOLACT++: DeformConv): pip install --upgrade onnxruntime"
                ) from None
            raise ModelError(f"{model}: onnxruntime cannot load it: {one_line(exc)}") from None
        if (device or "auto").startswith("cuda") and not gpu_providers & set(self.session.get_providers()):
            raise ModelError(
                f"device {device}: onnxruntime's CUDA provider did not start (the CUDA and cuDNN libraries it was built for were not found: "
                "pip install onnxruntime-gpu[cuda,cudnn])"
            )
        self.model = model
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.executed_on = ", ".join(self.session.get_providers())
        self.precision = "fp16 (TensorRT provider)" if TENSORRT_EP in self.session.get_providers() and runs_fp16 else "fp32"
        image_input = self.session.get_inputs()[0]
        if image_input.name != INPUT_NAME:
            raise ModelError(f"{model}: input {image_input.name!r}, not {INPUT_NAME!r}: not a graph written by python -m export")
        check_outputs([o.name for o in self.session.get_outputs()], model)
        self.max_batch, self.input_size = static_dims(image_input.shape, model)
        self.fixed_batch = self.max_batch is not None

    def run(self, images: np.ndarray) -> RawOutputs:
        try:
            return RawOutputs(*self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: images}))
        except Exception as exc:  # onnxruntime's pybind error types
            raise ModelError(f"{self.model}: onnxruntime failed on a batch of shape {list(images.shape)}: {one_line(exc)}") from None
