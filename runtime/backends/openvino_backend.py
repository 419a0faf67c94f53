"""OpenVINO: reads the exported ``.onnx`` directly, or the OpenVINO IR (``.xml`` + ``.bin``) of
``python -m export --to openvino``; CPU or Intel GPU. Both carry the exporter's metadata in rt_info under
``framework``.

f32 is the default because it is exact (the same detections as onnxruntime); OpenVINO's own CPU default
(bf16 where the CPU has it) is faster but changes detections, so bf16 and fp16 are asked for explicitly.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..detections import RawOutputs
from ..errors import ModelError, one_line
from contract import OUTPUT_NAMES

from .base import Backend, check_outputs, import_library, static_dims

PRECISION_HINTS = {"fp32": "f32", "fp16": "f16", "bf16": "bf16"}
HINT_NAMES = {hint: name for name, hint in PRECISION_HINTS.items()}


def openvino_device(device: str | None, available: list[str]) -> str:
    """Our device spelling (cpu, gpu, gpu.N, auto) -> OpenVINO's (CPU, GPU, GPU.N, AUTO)."""
    name = (device or "cpu").upper()
    if name != "AUTO" and name not in available:
        raise ModelError(f"device {device!r}: OpenVINO sees {', '.join(available)} here (device takes cpu, gpu, gpu.N or auto)")
    return name


def read_graph(ov: ModuleType, core: Any, model: Path) -> Any:
    """The model as an ``openvino.Model``. An ONNX file goes to the ONNX frontend alone: ``read_model``
    would try every frontend on a bad file, and TensorFlow's prints its parse errors to stderr."""
    onnx_frontend = ov.frontend.FrontEndManager().load_by_framework("onnx") if model.suffix == ".onnx" else None
    if onnx_frontend is not None and not onnx_frontend.supported(str(model)):
        raise ModelError(f"{model}: OpenVINO cannot load it: not a valid ONNX file")
    try:
        return onnx_frontend.convert(onnx_frontend.load(str(model))) if onnx_frontend else core.read_model(str(model))
    except Exception as exc:  # OpenVINO's own failure types
        raise ModelError(f"{model}: OpenVINO cannot load it: {one_line(exc)}") from None


def output_index(names: list[set[str]], name: str) -> int:
    """The position of the output called ``name`` among the model's outputs' name sets."""
    return next(index for index, aliases in enumerate(names) if name in aliases)


class OpenVinoBackend(Backend):
    name = "openvino"

    def __init__(self, model: Path, device: str | None, precision: str | None, threads: int | None):
        ov = import_library("openvino", self.name, "pip install openvino")
        core = ov.Core()
        target = openvino_device(device, core.available_devices)
        graph = read_graph(ov, core, model)
        rt_info = graph.get_rt_info()
        # The ONNX frontend puts an ONNX file's metadata_props under rt_info["framework"], and python -m export
        # --to openvino writes the IR's there.
        framework = rt_info["framework"] if "framework" in rt_info else {}
        self.metadata = {key: value.astype(str) for key, value in framework.items()}
        names = [output.get_names() for output in graph.outputs]
        check_outputs([name for aliases in names for name in aliases], model)
        if len(graph.inputs) != 1:
            raise ModelError(f"{model}: {len(graph.inputs)} inputs: not a graph written by python -m export")
        shape = [d.get_length() if d.is_static else None for d in graph.inputs[0].get_partial_shape()]
        self.max_batch, self.input_size = static_dims(shape, model)
        self.fixed_batch = self.max_batch is not None
        config = {"INFERENCE_PRECISION_HINT": PRECISION_HINTS[precision or "fp32"]}
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            self.compiled = core.compile_model(graph, target, config)
        except Exception as exc:  # e.g. a precision the device does not have
            raise ModelError(f"{model}: OpenVINO cannot compile it for {target}: {one_line(exc)}") from None
        self.model = model
        self.request = self.compiled.create_infer_request()
        # By position, not by name: where two outputs are one tensor (a v1 model's mask_scores are its
        # scores), a compiled IR keeps only one of the names.
        self.outputs = [self.compiled.outputs[output_index(names, name)] for name in OUTPUT_NAMES]
        self.executed_on = ", ".join(self.compiled.get_property("EXECUTION_DEVICES"))
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self.precision = HINT_NAMES.get(hint, hint)

    def run(self, images: np.ndarray) -> RawOutputs:
        try:
            results = self.request.infer({0: images})
        except Exception as exc:  # OpenVINO's RuntimeError
            raise ModelError(f"{self.model}: OpenVINO failed on a batch of shape {list(images.shape)}: {one_line(exc)}") from None
        return RawOutputs(*(results[output] for output in self.outputs))
