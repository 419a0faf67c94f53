"""Will TensorRT's ONNX parser take this graph? A static check that needs no TensorRT.

Every node's op type, attributes and constant inputs are compared with ``tensorrt_onnx_support.json``: the
parser's documented operator matrix and restrictions for the TensorRT version it names, plus this toolkit's
portability policy (no data-dependent shapes, no control flow, no INT64 network I/O).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

SUPPORT_FILE = Path(__file__).with_name("tensorrt_onnx_support.json")
INT32_RANGE = (np.iinfo(np.int32).min, np.iinfo(np.int32).max)


@dataclass(frozen=True)
class Finding:
    severity: str  # "error": the parser rejects it (or it breaks the policy); "warning": it may misbehave
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.where}: {self.message}"


@dataclass
class CheckResult:
    tensorrt_version: str
    num_nodes: int
    findings: list[Finding] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    def verdict(self) -> str:
        """One line, then one line per finding."""
        errors = sum(f.severity == "error" for f in self.findings)
        warnings = len(self.findings) - errors
        head = (
            f"TensorRT {self.tensorrt_version} ONNX parser check: {'PASS' if self.passed else 'FAIL'} "
            f"({self.num_nodes} nodes, {errors} errors, {warnings} warnings)"
        )
        return "\n".join([head, *(f"  {f}" for f in self.findings)])


def load_support(path: str | os.PathLike = SUPPORT_FILE) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def check_model(model: onnx.ModelProto | str | os.PathLike, support: dict[str, Any] | None = None) -> CheckResult:
    """Check a model (or an ONNX file) against ``support`` (default: the bundled data file)."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    support = support or load_support()
    graph = model.graph
    constants = _constant_values(graph)
    findings = _check_opset(model, support) + _check_io(graph, support)
    for index, node in enumerate(graph.node):
        findings += _check_node(node, f"node {index} {node.op_type} {node.name!r}", constants, support)
    findings += _check_int64_initializers(graph)
    return CheckResult(support["tensorrt_version"], len(graph.node), findings)


def _constant_values(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Tensors known when the engine is built: initializers and Constant node outputs."""
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            attr = next((a for a in node.attribute if a.name == "value"), None)
            if attr is not None:
                values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def _check_opset(model: onnx.ModelProto, support: dict[str, Any]) -> list[Finding]:
    low, high = support["opset_range"]
    findings = []
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and not low <= opset.version <= high:
            findings.append(Finding("error", "model", f"opset {opset.version} outside the parser's {low}-{high}"))
    return findings


def _check_io(graph: onnx.GraphProto, support: dict[str, Any]) -> list[Finding]:
    """Network inputs/outputs: bindable types; outputs' shapes must follow from the inputs' (no
    data-dependent dimension)."""
    forbidden = set(support["policy"]["io_forbidden_types"])
    input_dims = {d.dim_param for i in graph.input for d in i.type.tensor_type.shape.dim if d.dim_param}
    findings = []
    for kind, values in (("input", graph.input), ("output", graph.output)):
        for value in values:
            elem_type = onnx.TensorProto.DataType.Name(value.type.tensor_type.elem_type)
            if elem_type in forbidden:
                findings.append(Finding("error", f"{kind} {value.name}", f"{elem_type} network {kind}s cannot be bound on TensorRT 8.x"))
            if kind == "output":
                for axis, dim in enumerate(value.type.tensor_type.shape.dim):
                    if not dim.HasField("dim_value") and dim.dim_param not in input_dims:
                        findings.append(
                            Finding(
                                "error",
                                f"output {value.name}",
                                f"axis {axis} ({dim.dim_param or '?'}) is not determined by the input shapes",
                            )
                        )
    return findings


def _check_node(node: onnx.NodeProto, where: str, constants: dict[str, np.ndarray], support: dict[str, Any]) -> list[Finding]:
    if node.domain not in ("", "ai.onnx"):
        return [Finding("error", where, f"custom domain {node.domain!r}: needs a TensorRT plugin")]
    forbidden = support["policy"]["forbidden_ops"]
    if node.op_type in forbidden:
        return [Finding("error", where, f"{node.op_type} not allowed: {forbidden[node.op_type]}")]
    if node.op_type not in support["supported_ops"]:
        return [Finding("error", where, f"{node.op_type} is not supported by the TensorRT ONNX parser")]
    rules = support["restrictions"].get(node.op_type, {})
    return (
        _check_attributes(node, where, rules) + _check_constant_inputs(node, where, constants, rules) + _check_outputs(node, where, rules)
    )


def _attribute_value(node: onnx.NodeProto, name: str) -> Any:
    """The attribute's value, or the schema default when the node leaves it out (None if there is none)."""
    for attr in node.attribute:
        if attr.name == name:
            value = onnx.helper.get_attribute_value(attr)
            return value.decode() if isinstance(value, bytes) else value
    schema_attr = onnx.defs.get_schema(node.op_type).attributes.get(name)
    if schema_attr is None or not schema_attr.default_value.name:
        return None
    value = onnx.helper.get_attribute_value(schema_attr.default_value)
    return value.decode() if isinstance(value, bytes) else value


def _check_attributes(node: onnx.NodeProto, where: str, rules: dict[str, Any]) -> list[Finding]:
    findings = []
    for name, allowed in rules.get("attributes", {}).items():
        value = _attribute_value(node, name)
        if value is not None and value not in allowed:
            findings.append(Finding("error", where, f"{name}={value!r} unsupported (supported: {', '.join(map(str, allowed))})"))
    present = {a.name for a in node.attribute}
    for name in rules.get("forbidden_attributes", []):
        if name in present:
            findings.append(Finding("error", where, f"attribute {name} unsupported"))
    return findings


def _check_constant_inputs(node: onnx.NodeProto, where: str, constants: dict[str, np.ndarray], rules: dict[str, Any]) -> list[Finding]:
    findings = []
    inputs = {str(i): name for i, name in enumerate(node.input) if name}
    for index, label in rules.get("constant_inputs", {}).items():
        if index in inputs and inputs[index] not in constants:
            findings.append(Finding("error", where, f"{label} must be an initializer (build-time constant)"))
    for index, limit in rules.get("max_constant_value", {}).items():
        value = constants.get(inputs.get(index, ""))
        if value is not None and value.max() > limit:
            findings.append(Finding("error", where, f"{rules['constant_inputs'][index]}={value.max()} exceeds the parser's limit {limit}"))
    for index, label in rules.get("zero_inputs", {}).items():
        if index in inputs:
            value = constants.get(inputs[index])
            if value is None or np.any(value != 0):
                findings.append(Finding("error", where, f"{label} must be a constant zero (symmetric quantization)"))
    return findings


def _check_outputs(node: onnx.NodeProto, where: str, rules: dict[str, Any]) -> list[Finding]:
    limit = rules.get("max_outputs")
    used = sum(1 for name in node.output if name)
    if limit is not None and used > limit:
        return [Finding("error", where, f"only the first {limit} output(s) are supported")]
    return []


def _check_int64_initializers(graph: onnx.GraphProto) -> list[Finding]:
    """INT64 constants outside the INT32 range: TensorRT 8.x casts INT64 down and clamps them, which is
    harmless only for Slice starts/ends (an "until the end" sentinel)."""
    slice_bounds = {name for node in graph.node if node.op_type == "Slice" for name in node.input[1:3]}
    other_uses = {name for node in graph.node if node.op_type != "Slice" for name in node.input}
    findings = []
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.INT64 or (init.name in slice_bounds and init.name not in other_uses):
            continue
        value = numpy_helper.to_array(init)
        if value.size and (value.min() < INT32_RANGE[0] or value.max() > INT32_RANGE[1]):
            findings.append(Finding("warning", f"initializer {init.name}", "INT64 values outside INT32: clamped on TensorRT 8.x"))
    return findings
