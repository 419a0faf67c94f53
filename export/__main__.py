"""Exports a checkpoint to an end-to-end ONNX graph, an OpenVINO IR (either optionally INT8), a TensorRT engine
or a Triton model repository; or, with ``--check model.onnx``, prints the TensorRT compatibility verdict.

Each target is one row of :data:`TARGETS`: its file suffix, the options that apply to it, the checks run
before the model is loaded, and the builder. Errors are one line on stderr and leave no partial file behind:
exit 2 for bad input (weights, config, paths, options, calibration data, a missing library), 1 when the
export itself fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from command_line import entry_parser, entry_point
from yolact import CheckpointError, Yolact, load_model

from .calibration import DEFAULT_NUM_IMAGES, calibration_files
from .onnx_export import ExportError, ExportFailed, export_onnx
from .openvino_export import bin_path, export_openvino, quantize_openvino
from .quantize import CALIBRATION_METHODS, quantize_int8
from .triton_repo import add_repository_options, check_target, repository_options, write_repository
from .trt_check import check_model

PROG = "python -m export"
Calibration = list[Path] | None


@dataclass(frozen=True)
class Target:
    """One export target: ``suffix`` of the default --out (None: --out is required), the target-specific
    options (argparse dests) that apply to it, ``precheck(args, out)`` run before the model is loaded (it
    returns the --int8 calibration images, if any), and ``build(args, model, out, calibration)`` that writes
    the artefact."""

    name: str
    suffix: str | None
    options: frozenset[str]
    precheck: Callable[[argparse.Namespace, Path], Calibration]
    build: Callable[[argparse.Namespace, Yolact, Path, Calibration], None]


# Options that apply to some targets only; each target's row lists those it takes.
ONNX_INT8_OPTIONS = frozenset({"calib_method", "int8_keep_ends"})
TENSORRT_OPTIONS = frozenset({"fp16"})
TRITON_OPTIONS = frozenset({"plan"})


def check_onnx(args: argparse.Namespace, out: Path) -> Calibration:
    return calibration(args)


def check_openvino(args: argparse.Namespace, out: Path) -> Calibration:
    """The libraries --to openvino needs are installed and ``out`` names an IR."""
    for library in ("openvino", "nncf") if args.int8 else ("openvino",):
        if importlib.util.find_spec(library) is None:
            raise ExportError(f"--to openvino{' --int8' if args.int8 else ''} needs {library} (pip install {library})")
    if out.suffix != ".xml":
        raise ExportError(f"--out {out}: an OpenVINO IR is a .xml file (its .bin is written beside it)")
    return calibration(args)


def check_tensorrt(args: argparse.Namespace, out: Path) -> Calibration:
    from .tensorrt_build import BatchRange, import_tensorrt

    import_tensorrt()
    BatchRange.parse(args.batch)
    return calibration(args)


def check_triton(args: argparse.Namespace, out: Path) -> Calibration:
    if args.fp16 and not args.plan:
        raise ExportError("--fp16 applies to --to trt or --to triton --plan")
    check_target(out, args.force)
    return check_tensorrt(args, out) if args.plan else calibration(args)


def calibration(args: argparse.Namespace) -> Calibration:
    """The calibration images of --int8 (none for --to trt without --calib: the graph's own Q/DQ scales)."""
    if not args.int8 or (args.to == "trt" and not args.calib):
        return None
    return calibration_files(args.calib, args.calib_images)


def onnx_graph(args: argparse.Namespace, model: Yolact, out: Path) -> Path:
    """The FP32 graph at ``out``, its export summary and (unless --no-check) the TensorRT verdict printed."""
    report = export_onnx(model, out, args.opset, args.static_input, not args.no_simplify)
    print(report.summary())
    if not args.no_check:
        print(check_model(out).verdict())
    return out


def build_onnx(args: argparse.Namespace, model: Yolact, out: Path, calib: Calibration) -> None:
    if not args.int8:
        onnx_graph(args, model, out)
        return
    with tempfile.TemporaryDirectory() as scratch:
        graph = onnx_graph(args, model, Path(scratch) / "fp32.onnx")
        written = quantize_int8(graph, out, calib, args.calib_method, args.int8_keep_ends)
    print(f"wrote {written} (INT8 QDQ, {args.calib_method} calibration on {len(calib)} images)")


def build_openvino(args: argparse.Namespace, model: Yolact, out: Path, calib: Calibration) -> None:
    if args.int8:
        written = quantize_openvino(model, out, calib, args.static_input)
        print(f"wrote {written} and {bin_path(written).name} (INT8 by NNCF, calibrated on {len(calib)} images)")
    else:
        written = export_openvino(model, out, args.static_input)
        print(f"wrote {written} and {bin_path(written).name} (FP32)")


def build_tensorrt(args: argparse.Namespace, model: Yolact, out: Path, calib: Calibration) -> None:
    from .tensorrt_build import BatchRange, build_engine

    graph = onnx_graph(args, model, out.with_suffix(".onnx"))
    engine = build_engine(graph, out, BatchRange.parse(args.batch), args.fp16, args.int8, calib, args.timing_cache)
    print(f"wrote {engine} and {engine}.json")


def build_triton(args: argparse.Namespace, model: Yolact, out: Path, calib: Calibration) -> None:
    options = repository_options(args)
    with tempfile.TemporaryDirectory() as scratch:
        graph = onnx_graph(args, model, Path(scratch) / "fp32.onnx")
        if args.int8:
            graph = quantize_int8(graph, Path(scratch) / "int8.onnx", calib, args.calib_method, args.int8_keep_ends)
        plan = None
        if args.plan:  # a plan uses the QDQ graph's own scales for INT8, as --to trt does
            from .tensorrt_build import BatchRange, build_engine

            batch = BatchRange.parse(args.batch)
            plan = build_engine(graph, Path(scratch) / "model.plan", batch, args.fp16, args.int8, calib, args.timing_cache)
            options = dataclasses.replace(options, max_batch=batch.max)  # the engine's profile bounds the batch
        written = write_repository(graph, out, options, args.force, plan)
    print(f"wrote {written}/config.pbtxt and {written}/1/model{'.plan' if plan else '.onnx'} (Triton model repository {out})")


TARGETS = {
    target.name: target
    for target in (
        Target("onnx", ".onnx", ONNX_INT8_OPTIONS, check_onnx, build_onnx),
        Target("openvino", ".xml", frozenset(), check_openvino, build_openvino),
        Target("trt", ".engine", TENSORRT_OPTIONS, check_tensorrt, build_tensorrt),
        Target("triton", None, ONNX_INT8_OPTIONS | TENSORRT_OPTIONS | TRITON_OPTIONS, check_triton, build_triton),
    )
}
TARGET_OPTIONS = frozenset().union(*(target.options for target in TARGETS.values()))


def build_parser() -> argparse.ArgumentParser:
    parser = entry_parser(PROG, __doc__)
    parser.add_argument("--weights", type=Path, help="checkpoint (.pth); a training checkpoint carries its config")
    parser.add_argument("--config", help="config name (optional when the checkpoint embeds one)")
    parser.add_argument("--to", choices=tuple(TARGETS), default="onnx")
    parser.add_argument(
        "--out",
        type=Path,
        help="output file (default: beside the weights, .onnx / .xml / .engine); --to triton: the model repository folder (required)",
    )
    parser.add_argument("--opset", type=int, help="ONNX opset (default: 17; 19 for YOLACT++, which needs DeformConv)")
    parser.add_argument("--max-dets", type=int, help="detections per image K (default: the config's, 100)")
    parser.add_argument("--static-input", action="store_true", help="input fixed at the network size [B, S, S, 3]")
    parser.add_argument("--no-simplify", action="store_true", help="skip onnxslim")
    parser.add_argument("--fp16", action="store_true", help="TensorRT: FP16 with exp/softmax/sigmoid kept FP32")
    parser.add_argument(
        "--int8", action="store_true", help="ONNX: onnxruntime QDQ; OpenVINO: NNCF post-training; TensorRT: INT8 calibration"
    )
    parser.add_argument("--calib", type=Path, help="calibration image folder (default: embedded train split)")
    parser.add_argument("--calib-images", type=int, default=DEFAULT_NUM_IMAGES)
    parser.add_argument(
        "--calib-method", choices=CALIBRATION_METHODS, default="minmax", help="ONNX INT8: how activation ranges are calibrated"
    )
    parser.add_argument(
        "--int8-keep-ends", action="store_true", help="ONNX INT8: keep the first and the final convolutions (heads, protonet output) FP32"
    )
    parser.add_argument("--batch", default="1:1:1", help="TensorRT profile MIN:OPT:MAX")
    parser.add_argument("--timing-cache", type=Path, help="TensorRT timing cache (default: beside the engine)")
    parser.add_argument("--no-check", action="store_true", help="skip the TensorRT compatibility check")
    parser.add_argument("--check", type=Path, metavar="MODEL.onnx", help="only print the TensorRT check verdict")
    add_repository_options(parser)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options, with the rules of the target's row: only its own target-specific options, and --out
    where it has no default suffix."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.check is None and args.weights is None:
        parser.error("--weights is required (or --check MODEL.onnx)")
    target = TARGETS[args.to]
    for dest in sorted(TARGET_OPTIONS - target.options):
        if getattr(args, dest) != parser.get_default(dest):
            takers = ", ".join(f"--to {name}" for name, row in TARGETS.items() if dest in row.options)
            parser.error(f"--{dest.replace('_', '-')} applies to {takers}, not --to {args.to}")
    if target.suffix is None and args.out is None:
        parser.error(f"--to {args.to} needs --out (the model repository folder)")
    return args


def run_check(path: Path) -> int:
    if not path.is_file():
        raise ExportError(f"{path}: no such ONNX file")
    result = check_model(path)
    print(result.verdict())
    return 0 if result.passed else 1


def export(args: argparse.Namespace) -> int:
    """The target's fail-fast checks (libraries importable, paths usable, calibration images found), then
    the model loaded and the target built."""
    target = TARGETS[args.to]
    out = args.out or args.weights.with_suffix(target.suffix)
    calib = target.precheck(args, out)
    model = load_model(args.weights, args.config)
    if args.max_dets is not None:
        model.cfg = model.cfg.replace(max_num_detections=args.max_dets)
    target.build(args, model, out, calib)
    return 0


@entry_point(PROG, bad_input=(CheckpointError, ExportError), failures=(ExportFailed,))
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_check(args.check) if args.check is not None else export(args)


if __name__ == "__main__":
    sys.exit(main())
