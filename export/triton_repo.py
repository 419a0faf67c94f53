"""A Triton Inference Server model repository for an exported graph: ``REPO/<name>/config.pbtxt`` and
``REPO/<name>/1/model.onnx`` (platform ``onnxruntime_onnx``), or ``1/model.plan`` (``tensorrt_plan``).

The config's outputs are the graph file's own (names, dtypes, dims), so a new output of the graph is
served without a change here. A per-image scalar (``num_dets`` [B]) is declared with dims [1] and an empty
``reshape``, because Triton refuses an output without dims; ``python -m runtime.serve`` serves the same
tensors, so one client works against both.
"""

from __future__ import annotations

import argparse
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import onnx
from google.protobuf import text_encoding

from command_line import non_negative_int, positive_int

from contract import INPUT_NAME, METADATA_PREFIX

from .onnx_export import ExportError, read_metadata

DEFAULT_NAME = "yolact"
DEFAULT_MAX_BATCH = 8
DEFAULT_QUEUE_DELAY_US = 2000
INSTANCE_KINDS = {"cpu": "KIND_CPU", "gpu": "KIND_GPU", "auto": "KIND_AUTO"}
PLATFORMS = {".onnx": "onnxruntime_onnx", ".plan": "tensorrt_plan"}
# ONNX element types of the graph's tensors -> Triton's data types.
TRITON_TYPES = {
    onnx.TensorProto.UINT8: "TYPE_UINT8",
    onnx.TensorProto.INT8: "TYPE_INT8",
    onnx.TensorProto.INT32: "TYPE_INT32",
    onnx.TensorProto.INT64: "TYPE_INT64",
    onnx.TensorProto.FLOAT16: "TYPE_FP16",
    onnx.TensorProto.FLOAT: "TYPE_FP32",
    onnx.TensorProto.BOOL: "TYPE_BOOL",
}


@dataclass(frozen=True)
class RepositoryOptions:
    """How Triton serves the model: its name, batching and instances."""

    name: str = DEFAULT_NAME
    max_batch: int | None = None  # None: the graph's static batch, else DEFAULT_MAX_BATCH
    preferred_batch: tuple[int, ...] = ()  # empty: Triton's default (max_batch)
    queue_delay_us: int = DEFAULT_QUEUE_DELAY_US
    instances: int = 1
    instance_kind: str = "cpu"


@dataclass(frozen=True)
class TensorConfig:
    name: str
    data_type: str
    dims: tuple[int, ...]  # per image, -1 where dynamic


def graph_tensors(graph: onnx.ModelProto, tensors) -> list[TensorConfig]:
    """The graph's inputs or outputs as Triton sees them, batch dimension left out."""
    configs = []
    for tensor in tensors:
        element = tensor.type.tensor_type.elem_type
        if element not in TRITON_TYPES:
            raise ExportError(f"graph {tensor.name!r}: ONNX type {onnx.TensorProto.DataType.Name(element)} has no Triton equivalent here")
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.type.tensor_type.shape.dim)
        configs.append(TensorConfig(tensor.name, TRITON_TYPES[element], dims[1:]))
    return configs


def batch_limit(graph: onnx.ModelProto, asked: int | None) -> int:
    """max_batch_size: the graph's static batch dimension, else ``asked`` (default DEFAULT_MAX_BATCH)."""
    first = next(tensor for tensor in graph.graph.input if tensor.name == INPUT_NAME).type.tensor_type.shape.dim[0]
    static = first.dim_value if first.HasField("dim_value") else None
    if static is not None and asked is not None and asked > static:
        raise ExportError(f"--max-batch {asked}: the graph takes at most {static} images per batch")
    return asked or static or DEFAULT_MAX_BATCH


def quoted(text: str) -> str:
    return '"' + text_encoding.CEscape(text, as_utf8=True) + '"'


def listed(values) -> str:
    return "[ " + ", ".join(str(v) for v in values) + " ]"


def tensor_block(tensor: TensorConfig) -> str:
    lines = [f"    name: {quoted(tensor.name)}", f"    data_type: {tensor.data_type}"]
    if tensor.dims:
        lines.append(f"    dims: {listed(tensor.dims)}")
    else:  # a per-image scalar: Triton needs dims; the graph gives [B]
        lines += ["    dims: [ 1 ]", "    reshape: { shape: [ ] }"]
    return "  {\n" + "\n".join(lines) + "\n  }"


def model_config(graph_file: Path, options: RepositoryOptions, platform: str = PLATFORMS[".onnx"]) -> str:
    """config.pbtxt (protobuf text of Triton's ModelConfig) for the graph in ``graph_file`` (an ONNX file:
    the graph itself, or the one a plan was built from)."""
    graph = onnx.load(str(graph_file), load_external_data=False)
    max_batch = batch_limit(graph, options.max_batch)
    inputs = [tensor for tensor in graph_tensors(graph, graph.graph.input) if tensor.name == INPUT_NAME]
    outputs = graph_tensors(graph, graph.graph.output)
    batching = [f"  max_queue_delay_microseconds: {options.queue_delay_us}"]
    if options.preferred_batch:
        if max(options.preferred_batch) > max_batch:
            raise ExportError(f"--preferred-batch {max(options.preferred_batch)}: over max_batch_size {max_batch}")
        batching.insert(0, f"  preferred_batch_size: {listed(options.preferred_batch)}")
    parameters = [
        f"parameters {{\n  key: {quoted(key)}\n  value: {{ string_value: {quoted(value)} }}\n}}"
        for key, value in sorted(read_metadata(graph).items())
        if key.startswith(METADATA_PREFIX)
    ]
    return (
        "\n".join(
            [
                f"name: {quoted(options.name)}",
                f"platform: {quoted(platform)}",
                f"max_batch_size: {max_batch}",
                "input [\n" + ",\n".join(map(tensor_block, inputs)) + "\n]",
                "output [\n" + ",\n".join(map(tensor_block, outputs)) + "\n]",
                "dynamic_batching {\n" + "\n".join(batching) + "\n}",
                f"instance_group [\n  {{\n    count: {options.instances}\n    kind: {INSTANCE_KINDS[options.instance_kind]}\n  }}\n]",
                *parameters,
            ]
        )
        + "\n"
    )


def check_target(repo: Path, force: bool) -> None:
    """Refuse to write over an existing non-empty folder (or a file) unless ``force``."""
    if repo.exists() and not repo.is_dir():
        raise ExportError(f"--out {repo}: a file, not a model repository folder")
    if repo.is_dir() and any(repo.iterdir()) and not force:
        raise ExportError(f"--out {repo}: not empty (--force replaces it)")


def write_repository(graph_file: Path, repo: Path, options: RepositoryOptions, force: bool = False, model_file: Path | None = None) -> Path:
    """Write the repository for ``graph_file`` (``model_file``, a TensorRT plan built from it, goes in
    instead when given) as a whole: built in a temporary folder beside ``repo``, then renamed onto it."""
    check_target(repo, force)
    served = model_file or graph_file
    config = model_config(graph_file, options, PLATFORMS[served.suffix])
    repo.parent.mkdir(parents=True, exist_ok=True)
    building = repo.with_name(f".{repo.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        version = building / options.name / "1"
        version.mkdir(parents=True)
        shutil.copyfile(served, version / f"model{served.suffix}")
        (building / options.name / "config.pbtxt").write_text(config)
        replace_folder(building, repo)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return repo / options.name


def replace_folder(new: Path, target: Path) -> None:
    """Rename ``new`` onto ``target``; an existing ``target`` is moved aside first and removed after, so
    that a failure leaves the old repository in place."""
    if not target.exists():
        os.replace(new, target)
        return
    old = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.old")
    os.replace(target, old)
    try:
        os.replace(new, target)
    except OSError:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def add_repository_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("--to triton (model repository)")
    group.add_argument("--name", default=DEFAULT_NAME, help=f"model name in the repository (default {DEFAULT_NAME})")
    group.add_argument(
        "--max-batch", type=positive_int, help=f"max_batch_size (default: the graph's static batch, else {DEFAULT_MAX_BATCH})"
    )
    group.add_argument("--preferred-batch", type=positive_int, nargs="+", default=[], help="dynamic batching's preferred batch sizes")
    group.add_argument(
        "--queue-delay-us",
        type=non_negative_int,
        default=DEFAULT_QUEUE_DELAY_US,
        help=f"dynamic batching's max queue delay in microseconds (default {DEFAULT_QUEUE_DELAY_US})",
    )
    group.add_argument("--instances", type=positive_int, default=1, help="model instances (instance_group count)")
    group.add_argument("--instance-kind", choices=sorted(INSTANCE_KINDS), default="cpu", help="instance_group kind")
    group.add_argument("--plan", action="store_true", help="a TensorRT plan (tensorrt_plan) instead of the ONNX graph; needs TensorRT")
    group.add_argument("--force", action="store_true", help="replace a non-empty --out")


def repository_options(args: argparse.Namespace) -> RepositoryOptions:
    return RepositoryOptions(
        args.name, args.max_batch, tuple(args.preferred_batch), args.queue_delay_us, args.instances, args.instance_kind
    )
