"""``python -m export``: checkpoint -> end-to-end ONNX graph, OpenVINO IR (either optionally INT8),
TensorRT engine or Triton model repository; or ``--check model.onnx`` for the TensorRT compatibility verdict.

Errors about inputs (weights, config, paths, calibration data, missing TensorRT) are one line on stderr
with a non-zero exit status, and leave no partial file behind.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import sys
import tempfile
from pathlib import Path

from yolact import CheckpointError, load_model

from .calibration import DEFAULT_NUM_IMAGES, calibration_files
from .onnx_export import ExportError, export_onnx
from .openvino_export import bin_path, export_openvino, quantize_openvino
from .quantize import CALIBRATION_METHODS, quantize_int8
from .triton_repo import add_repository_options, check_target, repository_options, write_repository
from .trt_check import check_model


SUFFIXES = {"onnx": ".onnx", "openvino": ".xml", "trt": ".engine"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, help="checkpoint (.pth); a training checkpoint carries its config")
    parser.add_argument("--config", help="config name (optional when the checkpoint embeds one)")
    parser.add_argument("--to", choices=(*SUFFIXES, "triton"), default="onnx")
    parser.add_argument("--out", type=Path, help="output file (default: beside the weights, .onnx / .xml / .engine); "
                        "--to triton: the model repository folder (required)")
    parser.add_argument("--opset", type=int, help="ONNX opset (default: 17; 19 for YOLACT++, which needs DeformConv)")
    parser.add_argument("--max-dets", type=int, help="detections per image K (default: the config's, 100)")
    parser.add_argument("--static-input", action="store_true", help="input fixed at the network size [B, S, S, 3]")
    parser.add_argument("--no-simplify", action="store_true", help="skip onnxslim")
    parser.add_argument("--fp16", action="store_true", help="TensorRT: FP16 with exp/softmax/sigmoid kept FP32")
    parser.add_argument("--int8", action="store_true",
                        help="ONNX: onnxruntime QDQ; OpenVINO: NNCF post-training; TensorRT: INT8 calibration")
    parser.add_argument("--calib", type=Path, help="calibration image folder (default: embedded train split)")
    parser.add_argument("--calib-images", type=int, default=DEFAULT_NUM_IMAGES)
    parser.add_argument("--calib-method", choices=CALIBRATION_METHODS, default="minmax",
                        help="ONNX INT8: how activation ranges are calibrated")
    parser.add_argument("--int8-keep-ends", action="store_true",
                        help="ONNX INT8: keep the first and the final convolutions (heads, protonet output) FP32")
    parser.add_argument("--batch", default="1:1:1", help="TensorRT profile MIN:OPT:MAX")
    parser.add_argument("--timing-cache", type=Path, help="TensorRT timing cache (default: beside the engine)")
    parser.add_argument("--no-check", action="store_true", help="skip the TensorRT compatibility check")
    parser.add_argument("--check", type=Path, metavar="MODEL.onnx", help="only print the TensorRT check verdict")
    add_repository_options(parser)
    args = parser.parse_args(argv)
    if args.check is None and args.weights is None:
        parser.error("--weights is required (or --check MODEL.onnx)")
    if args.fp16 and args.to != "trt" and not args.plan:
        parser.error("--fp16 applies to --to trt (or --to triton --plan)")
    if args.plan and args.to != "triton":
        parser.error("--plan applies to --to triton")
    if args.to == "triton" and args.out is None:
        parser.error("--to triton needs --out REPO (the model repository folder)")
    if args.to == "openvino" and (args.calib_method != "minmax" or args.int8_keep_ends):
        parser.error("--calib-method and --int8-keep-ends apply to --to onnx --int8 (NNCF calibrates --to openvino)")
    return args


def run_check(path: Path) -> int:
    if not path.is_file():
        raise ExportError(f"{path}: no such ONNX file")
    result = check_model(path)
    print(result.verdict())
    return 0 if result.passed else 1


def check_openvino_output(out: Path, int8: bool) -> None:
    """The libraries --to openvino needs are installed and ``out`` names an IR."""
    for library in ("openvino", "nncf") if int8 else ("openvino",):
        if importlib.util.find_spec(library) is None:
            raise ExportError(f"--to openvino{' --int8' if int8 else ''} needs {library} (pip install {library})")
    if out.suffix != ".xml":
        raise ExportError(f"--out {out}: an OpenVINO IR is a .xml file (its .bin is written beside it)")


def export(args: argparse.Namespace) -> int:
    """Fail-fast checks first (TensorRT importable, calibration images found), then the export."""
    out = args.out or args.weights.with_suffix(SUFFIXES[args.to])
    if args.to == "triton":
        check_target(out, args.force)
    if args.to == "trt" or args.plan:
        from .tensorrt_build import BatchRange, build_engine, import_tensorrt

        import_tensorrt()
        batch = BatchRange.parse(args.batch)
    if args.to == "openvino":
        check_openvino_output(out, args.int8)
    onnx_int8 = args.int8 and args.to in ("onnx", "triton")
    calib = calibration_files(args.calib, args.calib_images) if args.int8 and (args.to != "trt" or args.calib) else None

    model = load_model(args.weights, args.config)
    if args.max_dets is not None:
        model.cfg = model.cfg.replace(max_num_detections=args.max_dets)
    if args.to == "openvino":
        if args.int8:
            written = quantize_openvino(model, out, calib, args.static_input)
            print(f"wrote {written} and {bin_path(written).name} (INT8 by NNCF, calibrated on {len(calib)} images)")
        else:
            written = export_openvino(model, out, args.static_input)
            print(f"wrote {written} and {bin_path(written).name} (FP32)")
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        onnx_out = out.with_suffix(".onnx") if args.to == "trt" else out
        if onnx_int8 or args.to == "triton":
            onnx_out = Path(scratch) / "fp32.onnx"
        report = export_onnx(model, onnx_out, args.opset, args.static_input, not args.no_simplify)
        print(report.summary())
        if not args.no_check:
            print(check_model(onnx_out).verdict())
        if args.to == "onnx" and args.int8:
            written = quantize_int8(onnx_out, out, calib, args.calib_method, args.int8_keep_ends)
            print(f"wrote {written} (INT8 QDQ, {args.calib_method} calibration on {len(calib)} images)")
        elif args.to == "trt":
            engine = build_engine(onnx_out, out, batch, args.fp16, args.int8, calib, args.timing_cache)
            print(f"wrote {engine} and {engine}.json")
        elif args.to == "triton":
            graph = quantize_int8(onnx_out, Path(scratch) / "int8.onnx", calib, args.calib_method, args.int8_keep_ends) if args.int8 else onnx_out
            # A plan uses the QDQ graph's own scales for INT8, as --to trt does.
            plan = build_engine(graph, Path(scratch) / "model.plan", batch, args.fp16, args.int8, calib, args.timing_cache) if args.plan else None
            options = repository_options(args)
            if plan:  # the engine's profile bounds the batch
                options = dataclasses.replace(options, max_batch=batch.max)
            written = write_repository(graph, out, options, args.force, plan)
            print(f"wrote {written}/config.pbtxt and {written}/1/model{'.plan' if plan else '.onnx'} (Triton model repository {out})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run_check(args.check) if args.check is not None else export(args)
    except (CheckpointError, ExportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    except OSError as exc:
        print(f"error: cannot write {exc.filename or 'the output'}: {exc.strerror or exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
