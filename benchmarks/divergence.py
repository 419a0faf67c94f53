"""``python -m benchmarks.divergence``: where two backends' results part, tensor by tensor.

An exported graph's final outputs say that two backends differ, not where. This runs the graph with every
intermediate tensor marked as an output on a reference and a candidate backend, on one image, and compares
each tensor in graph order: the largest absolute difference, that difference relative to the reference
tensor's largest magnitude, and how much of it the node itself introduced (its relative difference less the
largest of its inputs'). It names the first tensor above ``--tolerance`` and the nodes that introduce the
most. A backend is

- ``onnxruntime:PROVIDER[,KEY=VALUE...]``: cpu, cuda, tensorrt or openvino, with provider options
  (``onnxruntime:cuda,use_tf32=0,cudnn_conv_algo_search=DEFAULT``);
- ``openvino:PRECISION``: OpenVINO on the CPU at f32, bf16 or f16 (its inference precision hint).

``--candidate-model`` compares a second graph of the same model (an INT8 one: tensors are matched by name, a
quantized one by its dequantized value).
Marking a tensor as an output keeps a backend from fusing it away, so the final outputs are also compared
on the graphs as exported: when those differ but no marked tensor does, the difference is in a fusion.
Writes ``benchmarks/results/divergence_<machine>_<model>_<date>.json`` and ``.md``.
"""

from __future__ import annotations

import datetime
import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import onnx
from tqdm import tqdm

from command_line import entry_parser, entry_point, positive_int
from contract import INPUT_NAME, OUTPUT_NAMES
from export.onnx_export import export_onnx
from runtime.backends.onnxruntime_backend import CPU_EP, CUDA_EP, OPENVINO_EP, TENSORRT_EP
from runtime.errors import one_line
from yolact.checkpoint import CheckpointError
from yolact.config import CONFIGS
from yolact.fileio import ImageReadError, read_bgr_image
from contract.files import write_text

from .fps import encoded_images
from .machine import machine_details, machine_tag
from .reports import report_stem
from .variants import load_or_recipe

PROG = "python -m benchmarks.divergence"
RESULTS = Path(__file__).parent / "results"
PROVIDERS = {"cpu": CPU_EP, "cuda": CUDA_EP, "tensorrt": TENSORRT_EP, "openvino": OPENVINO_EP}
OPENVINO_PRECISIONS = ("f32", "bf16", "f16")
# Ops whose outputs are a choice of elements or a yes/no per element: past one, a small numeric difference can
# pick other elements or flip a decision, and the difference is no longer arithmetic.
SELECTING_OPS = ("TopK", "ArgMax", "ArgMin", "NonZero", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Equal")
# Below this a reference tensor counts as all zeros, and its relative difference is taken against 1.
TINY = 1e-12


class UnusableInput(ValueError):
    """A backend spec, graph or file this tool cannot use; the message is one line naming it."""


@dataclass(frozen=True)
class BackendSpec:
    """``library:target[,key=value...]`` as given on the command line."""

    text: str
    library: str  # onnxruntime, openvino
    target: str  # an onnxruntime provider's short name, or an OpenVINO precision
    options: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> "BackendSpec":
        library, _, rest = text.partition(":")
        target, *pairs = rest.split(",") if rest else ("",)
        options = {}
        for pair in pairs:
            key, equals, value = pair.partition("=")
            if not key or not equals:
                raise UnusableInput(f"backend {text!r}: provider option {pair!r} is not KEY=VALUE")
            options[key] = value
        if library == "onnxruntime" and target in PROVIDERS:
            return cls(text, library, target, options)
        if library == "openvino" and target in OPENVINO_PRECISIONS and not options:
            return cls(text, library, target)
        raise UnusableInput(
            f"backend {text!r}: expected onnxruntime:{{{','.join(PROVIDERS)}}}[,KEY=VALUE...] "
            f"or openvino:{{{','.join(OPENVINO_PRECISIONS)}}}"
        )


def marked(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with every node output that has an inferred type added as a graph output."""
    typed = {info.name: info for info in onnx.shape_inference.infer_shapes(model).graph.value_info}
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    outputs = {o.name for o in copy.graph.output}
    copy.graph.output.extend(
        typed[name] for node in copy.graph.node for name in node.output if name and name not in outputs and name in typed
    )
    return copy


def producers(model: onnx.ModelProto) -> dict[str, tuple[str, str, list[str]]]:
    """Each node output's (node name, op type, input names), in graph order."""
    return {name: (node.name, node.op_type, list(node.input)) for node in model.graph.node for name in node.output}


def dequantized(model: onnx.ModelProto) -> dict[str, str]:
    """In a QDQ graph, each quantized tensor's name -> the DequantizeLinear output that the next node reads
    (what the tensor is worth there; the name itself may now hold, say, a convolution's output before the ReLU
    that the quantization absorbed)."""
    quantized = {node.output[0]: node.input[0] for node in model.graph.node if node.op_type == "QuantizeLinear"}
    return {
        quantized[node.input[0]]: node.output[0]
        for node in model.graph.node
        if node.op_type == "DequantizeLinear" and node.input[0] in quantized
    }


def run_graph(model: onnx.ModelProto, spec: BackendSpec, image: np.ndarray, folder: Path) -> tuple[dict[str, np.ndarray], str]:
    """Every output of ``model`` on ``spec`` for one BGR image, by name, and what it ran on."""
    path = folder / "graph.onnx"
    onnx.save(model, str(path))
    batch = np.ascontiguousarray(image[None])
    if spec.library == "onnxruntime":
        import onnxruntime as ort

        provider = PROVIDERS[spec.target]
        if provider not in ort.get_available_providers():
            raise UnusableInput(f"backend {spec.text!r}: this onnxruntime has no {provider}")
        if spec.target in ("cuda", "tensorrt") and hasattr(ort, "preload_dlls"):
            ort.preload_dlls()
        fallback = [] if provider == CPU_EP else [CPU_EP]  # for what the provider does not run
        session = ort.InferenceSession(str(path), providers=[(provider, spec.options), *fallback])
        if session.get_providers()[0] != provider:
            raise UnusableInput(f"backend {spec.text!r}: {provider} did not start")
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, {INPUT_NAME: batch}))), ", ".join(session.get_providers())
    import openvino as ov

    if any(node.op_type == "DeformConv" for node in model.graph.node):
        raise UnusableInput(
            f"backend {spec.text!r}: OpenVINO's ONNX reader does not convert DeformConv (YOLACT++ runs on its IR: "
            "python -m benchmarks.parity compares that)"
        )
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": spec.target})
    results = compiled.create_infer_request().infer({INPUT_NAME: batch})
    outputs = {}
    for port, value in results.items():
        for name in port.get_names():
            outputs[name] = np.asarray(value)
    return outputs, f"OpenVINO CPU, {compiled.get_property('INFERENCE_PRECISION_HINT').to_string()}"


def difference(reference: np.ndarray, candidate: np.ndarray) -> dict:
    """For floats max_abs, max_rel (to the reference's largest magnitude) and rms_rel (the difference's RMS
    over the reference's: one outlier does not set it); for integers and booleans the share of elements that
    differ; a shape mismatch says so."""
    if reference.shape != candidate.shape:
        return {"shape": [list(reference.shape), list(candidate.shape)], "max_abs": None, "max_rel": float("inf")}
    if reference.size == 0:
        return {"max_abs": 0.0, "max_rel": 0.0}
    if np.issubdtype(reference.dtype, np.floating):
        delta = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))
        scale = max(float(np.abs(reference).max()), TINY) if np.isfinite(reference).all() else 1.0
        max_abs = float(np.nan_to_num(delta, nan=np.inf).max())
        rms_rel = float(np.sqrt(np.mean(delta**2)) / max(np.sqrt(np.mean(reference.astype(np.float64) ** 2)), TINY))
        return {"max_abs": max_abs, "max_rel": max_abs / scale, "rms_rel": rms_rel}
    changed = float(np.mean(reference != candidate))
    return {"changed": changed, "max_abs": None, "max_rel": changed}


def compare(
    reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray], produced_by: dict[str, tuple[str, str, list[str]]]
) -> list[dict]:
    """One row per tensor both runs have, in graph order, with what its node introduced and whether it lies
    after a selection (a TopK or a comparison, or downstream of one): there a different choice of elements or
    a flipped decision, not arithmetic, makes the difference."""
    rows, relative, after_selection = [], {}, set()
    for name, (node, op, inputs) in produced_by.items():
        if op in SELECTING_OPS or after_selection.intersection(inputs):
            after_selection.add(name)
        if name not in reference or name not in candidate:
            continue
        row = {
            "tensor": name,
            "node": node,
            "op": op,
            "dtype": str(reference[name].dtype),
            "shape": list(reference[name].shape),
            **difference(reference[name], candidate[name]),
        }
        inherited = max((relative.get(i, 0.0) for i in inputs), default=0.0)
        row["introduced"] = max(row["max_rel"] - inherited, 0.0)
        row["after_selection"] = name in after_selection
        relative[name] = row["max_rel"]
        rows.append(row)
    return rows


def report_markdown(report: dict, top: int = 10) -> str:
    def cell(value):
        return "-" if value is None else f"{value:.2e}"

    rows = report["tensors"]
    first = report["first_above_tolerance"]
    reference, candidate = report["reference"], report["candidate"]
    other_graph = f" on {Path(candidate['model']).name}" if candidate["model"] != reference["model"] else ""
    lines = [
        f"{report['model']} on {report['image']}: {reference['spec']} ({reference['ran_on']}) against {candidate['spec']} "
        f"({candidate['ran_on']}){other_graph}, {len(rows)} tensors compared",
        "",
        (
            f"First tensor above {report['tolerance']:g} relative: `{first['tensor']}` ({first['op']} `{first['node']}`), "
            f"{first['max_rel']:.2e} relative, {cell(first['max_abs'])} absolute."
            if first
            else f"No tensor differs by more than {report['tolerance']:g} relative."
        ),
        "",
        "| final output (graphs as exported) | max abs diff | max rel diff |",
        "|---|---|---|",
        *(f"| {name} | {cell(d['max_abs'])} | {cell(d['max_rel'])} |" for name, d in report["final_outputs"].items()),
        "",
        f"Nodes before any selection (TopK, comparison) that introduce the most difference (relative, less their inputs'), top {top}:",
        "",
        "| tensor | op | shape | max abs diff | max rel diff | rms rel diff | introduced |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in sorted((r for r in rows if not r["after_selection"]), key=lambda r: -r["introduced"])[:top]:
        lines.append(
            f"| `{row['tensor']}` | {row['op']} | {'x'.join(map(str, row['shape']))} | {cell(row['max_abs'])} | "
            f"{cell(row['max_rel'])} | {cell(row.get('rms_rel'))} | {cell(row['introduced'])} |"
        )
    chosen = report["first_changed_selection"]
    lines += [
        "",
        f"First selection that chose otherwise: `{chosen['tensor']}` ({chosen['op']}), {chosen['max_rel']:.1%} of its elements."
        if chosen
        else "Every selection (TopK, comparison) chose the same.",
    ]
    return "\n".join(lines) + "\n"


def load_image(path: Path | None) -> tuple[np.ndarray, str]:
    if path is not None:
        return read_bgr_image(path), str(path)
    encoded = encoded_images(1, 480, 640)[0]
    return cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR), "an embedded val image at 480x640"


def read_graph(path: Path) -> onnx.ModelProto:
    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf's DecodeError, or onnx's own for a missing external-data file
        raise UnusableInput(f"{path}: not an ONNX graph ({one_line(exc)})") from None


def diverge(
    model_path: Path, candidate_path: Path, reference: BackendSpec, candidate: BackendSpec, image: np.ndarray, tolerance: float
) -> dict:
    """The report's body: final outputs of the graphs as exported, then every marked tensor."""
    reference_graph = read_graph(model_path)
    candidate_graph = reference_graph if candidate_path == model_path else read_graph(candidate_path)
    marked_reference = marked(reference_graph)
    runs = {
        "reference": (reference, reference_graph, marked_reference),
        "candidate": (candidate, candidate_graph, marked_reference if candidate_graph is reference_graph else marked(candidate_graph)),
    }
    final, ran_on, tensors = {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="divergence-") as folder:
        for side, (spec, graph, graph_marked) in tqdm(runs.items(), desc="backends", unit="backend"):
            try:
                final[side], ran_on[side] = run_graph(graph, spec, image, Path(folder))
                tensors[side], _ = run_graph(graph_marked, spec, image, Path(folder))
            except UnusableInput:
                raise
            except Exception as exc:  # each library raises its own types for a graph it cannot compile or run
                raise UnusableInput(f"backend {spec.text!r}: cannot run the graph: {one_line(exc)}") from None
    for name, value_seen in dequantized(candidate_graph).items():
        if value_seen in tensors["candidate"]:
            tensors["candidate"][name] = tensors["candidate"][value_seen]
    rows = compare(tensors["reference"], tensors["candidate"], producers(reference_graph))
    first = next((row for row in rows if row["max_rel"] > tolerance), None)
    chosen = next((row for row in rows if row["op"] in SELECTING_OPS and row.get("changed")), None)
    return {
        "reference": {"spec": reference.text, "model": str(model_path), "ran_on": ran_on["reference"]},
        "candidate": {"spec": candidate.text, "model": str(candidate_path), "ran_on": ran_on["candidate"]},
        "tolerance": tolerance,
        "final_outputs": {name: difference(final["reference"][name], final["candidate"][name]) for name in OUTPUT_NAMES},
        "first_above_tolerance": first,
        "first_changed_selection": chosen,
        "tensors": rows,
    }


@entry_point(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    parser = entry_parser(PROG, __doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, help="an exported .onnx")
    source.add_argument(
        "--config", choices=sorted(CONFIGS), metavar="CONFIG", help="export this config first (recipe weights unless --weights)"
    )
    parser.add_argument("--weights", type=Path, help="with --config: a checkpoint")
    parser.add_argument("--candidate-model", type=Path, help="the candidate runs this graph instead (default: the same one)")
    parser.add_argument("--reference", default="onnxruntime:cpu", help="backend spec (default onnxruntime:cpu)")
    parser.add_argument("--candidate", required=True, help="backend spec, e.g. onnxruntime:cuda,use_tf32=0 or openvino:bf16")
    parser.add_argument("--image", type=Path, help="an image file (default: an embedded val image)")
    parser.add_argument("--tolerance", type=float, default=1e-5, help="relative difference that counts (default 1e-5)")
    parser.add_argument("--top", type=positive_int, default=10, help="rows of the worst-nodes table")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    try:
        reference, candidate = BackendSpec.parse(args.reference), BackendSpec.parse(args.candidate)
    except UnusableInput as exc:
        parser.error(str(exc))
    for option, path in (
        ("--model", args.model),
        ("--candidate-model", args.candidate_model),
        ("--image", args.image),
        ("--weights", args.weights),
    ):
        if path is not None and not path.is_file():
            parser.error(f"{option} {path}: no such file")
    if args.weights and not args.config:
        parser.error("--weights goes with --config")
    started = datetime.datetime.now(datetime.timezone.utc)
    try:
        image, image_name = load_image(args.image)
        with tempfile.TemporaryDirectory(prefix="divergence-export-") as folder:
            model_path = args.model
            if model_path is None:
                model_path = Path(folder) / f"{args.config}.onnx"
                export_onnx(load_or_recipe(args.config, args.weights, "cpu"), model_path)
            body = diverge(model_path, args.candidate_model or model_path, reference, candidate, image, args.tolerance)
    except (UnusableInput, ImageReadError, CheckpointError) as exc:
        parser.error(str(exc))
    name = args.config or args.model.stem
    machine = machine_details()
    report = {"what": __doc__.split("\n\n")[1].replace("\n", " "), "model": name, "image": image_name, "machine": machine, **body}
    stem = report_stem(args.out_dir, "divergence", machine_tag(machine), started, name)
    text = report_markdown(report, args.top)
    write_text(stem.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    write_text(stem.with_suffix(".md"), text)
    print(text)
    print(f"wrote {stem}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
