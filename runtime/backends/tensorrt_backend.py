"""TensorRT 10: a serialized engine from ``python -m export --to trt`` and its JSON sidecar.

Written to the documented TensorRT 10 Python API (deserialize_cuda_engine, set_input_shape,
set_tensor_address, execute_async_v3) on one CUDA stream, with pinned host buffers, device memory from
cuda-python's runtime bindings. Kept thin: TensorRT cannot be installed on the machines this is developed
on, so every line here is one the documentation prescribes.
"""

from __future__ import annotations

import ctypes
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..detections import RawOutputs
from ..errors import ModelError
from contract import INPUT_NAME, OUTPUT_NAMES

from .base import Backend, check_outputs, import_library

INSTALL = "pip install 'yolact-runtime[tensorrt]' on a machine with an NVIDIA GPU"


def sidecar_path(engine: Path) -> Path:
    """Where ``python -m export --to trt`` writes the engine's metadata: ``<engine>.json``."""
    return engine.with_name(engine.name + ".json")


def read_sidecar(engine: Path) -> dict[str, Any]:
    path = sidecar_path(engine)
    try:
        sidecar = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{path}: missing; an engine's metadata is in the JSON sidecar that python -m export --to trt writes") from None
    except ValueError as exc:
        raise ModelError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(sidecar, dict) or not isinstance(sidecar.get("onnx_metadata"), dict):
        raise ModelError(f"{path}: no onnx_metadata: not a sidecar written by python -m export --to trt")
    return sidecar


def cuda_device_index(device: str | None) -> int:
    name = device or "cuda"
    index = name.partition(":")[2] or "0"
    if name.partition(":")[0] not in ("cuda", "auto") or not index.isdigit():
        raise ModelError(f"device {device!r}: tensorrt runs on CUDA GPUs (device takes cuda or cuda:N)")
    return int(index)


class PinnedBuffer:
    """One tensor's page-locked host memory and device memory, grown when a larger shape comes."""

    def __init__(self, cuda: "CudaRuntime", dtype: np.dtype):
        self.cuda = cuda
        self.dtype = np.dtype(dtype)
        self.capacity = 0
        self.host_ptr = self.device_ptr = 0

    def fit(self, shape: tuple[int, ...]) -> np.ndarray:
        """A host array of ``shape`` over the pinned memory, reallocating both sides if it is too small."""
        nbytes = int(np.prod(shape)) * self.dtype.itemsize
        if nbytes > self.capacity:
            self.free()
            self.host_ptr = self.cuda.call("cudaMallocHost", nbytes)
            self.device_ptr = self.cuda.call("cudaMalloc", nbytes)
            self.capacity = nbytes
        raw = (ctypes.c_byte * nbytes).from_address(self.host_ptr)
        return np.frombuffer(raw, dtype=self.dtype).reshape(shape)

    def free(self) -> None:
        if self.capacity:
            self.cuda.call("cudaFreeHost", self.host_ptr)
            self.cuda.call("cudaFree", self.device_ptr)
            self.capacity = 0


class CudaRuntime:
    """cuda-python's runtime API with its (error, value) results turned into a value or a ModelError."""

    def __init__(self):
        self.api = import_library("cuda.bindings.runtime", "tensorrt", INSTALL)

    def call(self, function: str, *args: Any) -> Any:
        error, *values = getattr(self.api, function)(*args)
        if error != self.api.cudaError_t.cudaSuccess:
            raise ModelError(f"CUDA {function} failed: {self.api.cudaGetErrorName(error)[1].decode()}")
        return values[0] if values else None


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, model: Path, device: str | None, precision: str | None, threads: int | None):
        trt = import_library("tensorrt", self.name, INSTALL)
        if threads is not None:
            raise ModelError("threads: TensorRT runs on the GPU; the option is for onnxruntime and openvino")
        sidecar = read_sidecar(model)
        built = sidecar.get("precision", "fp32")
        if precision is not None and precision != built:
            raise ModelError(f"precision {precision}: {model} was built for {built} (python -m export --to trt sets it)")
        self.cuda = CudaRuntime()
        device_index = cuda_device_index(device)
        self.cuda.call("cudaSetDevice", device_index)
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(model.read_bytes())
        if self.engine is None:
            raise ModelError(f"{model}: TensorRT cannot deserialize it (corrupt, or built by another TensorRT version or for another GPU)")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        check_outputs(names, model)
        if INPUT_NAME not in names:
            raise ModelError(f"{model}: no {INPUT_NAME!r} input: not an engine built from python -m export")
        self.context = self.engine.create_execution_context()
        self.profile_min, _, self.profile_max = (tuple(s) for s in self.engine.get_tensor_profile_shape(INPUT_NAME, 0))
        self.stream = self.cuda.call("cudaStreamCreate")
        self.buffers = {name: PinnedBuffer(self.cuda, trt.nptype(self.engine.get_tensor_dtype(name))) for name in names}
        self.model = model
        self.metadata = {key: str(value) for key, value in sidecar["onnx_metadata"].items()}
        self.max_batch = self.profile_max[0]
        self.fixed_batch = self.profile_min[0] == self.profile_max[0]  # e.g. --batch 4:4:4
        fixed = self.profile_min[1:3] == self.profile_max[1:3]
        self.input_size = tuple(self.profile_min[1:3]) if fixed else None
        self.precision = built
        self.executed_on = self.cuda.call("cudaGetDeviceProperties", device_index).name.decode().rstrip("\x00")
        self.copy_in = self.cuda.api.cudaMemcpyKind.cudaMemcpyHostToDevice
        self.copy_out = self.cuda.api.cudaMemcpyKind.cudaMemcpyDeviceToHost

    def run(self, images: np.ndarray) -> RawOutputs:
        shape = images.shape
        if not all(low <= size <= high for low, size, high in zip(self.profile_min, shape, self.profile_max)):
            raise ModelError(
                f"{self.model}: a batch of shape {list(shape)} is outside the engine's profile "
                f"{list(self.profile_min)}..{list(self.profile_max)} (python -m export --to trt --batch sets it)"
            )
        self.context.set_input_shape(INPUT_NAME, shape)
        hosts = {}
        for name, buffer in self.buffers.items():
            hosts[name] = buffer.fit(shape if name == INPUT_NAME else tuple(self.context.get_tensor_shape(name)))
            self.context.set_tensor_address(name, buffer.device_ptr)
        np.copyto(hosts[INPUT_NAME], images)
        source = self.buffers[INPUT_NAME]
        self.cuda.call("cudaMemcpyAsync", source.device_ptr, source.host_ptr, images.nbytes, self.copy_in, self.stream)
        if not self.context.execute_async_v3(int(self.stream)):
            raise ModelError(f"{self.model}: TensorRT execution failed on a batch of shape {list(shape)}")
        for name in OUTPUT_NAMES:
            buffer = self.buffers[name]
            self.cuda.call("cudaMemcpyAsync", buffer.host_ptr, buffer.device_ptr, hosts[name].nbytes, self.copy_out, self.stream)
        self.cuda.call("cudaStreamSynchronize", self.stream)
        # Copies: the pinned buffers are overwritten by the next run.
        return RawOutputs(*(hosts[name].copy() for name in OUTPUT_NAMES))

    def close(self) -> None:
        for buffer in self.buffers.values():
            buffer.free()
        self.cuda.call("cudaStreamDestroy", self.stream)
