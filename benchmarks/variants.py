"""The deployable variants that ``benchmarks.fps`` times and ``benchmarks.parity`` scores: one model on every
backend and precision this machine has, each split into the same three stages.

A variant turns a uint8 BGR batch into its raw padded outputs (``graph``: network plus in-graph
post-processing) and then one image's final detections (``paste``: masks at the image size, pixel boxes).
PyTorch variants run ``yolact.EndToEnd`` and ``yolact.to_image``, as ``yolact.predict`` does; the others run
the exported graph through the torch-free ``runtime``.
"""

from __future__ import annotations

import contextlib
import importlib.util
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import argparse

import numpy as np
import torch

import runtime
from export.calibration import calibration_files
from export.onnx_export import export_onnx
from export.openvino_export import export_openvino, quantize_openvino
from export.quantize import CALIBRATION_METHODS, QUANTIZED_OPS, quantize_int8
from yolact import EndToEnd, ImageDetections, Yolact, to_image
from yolact.checkpoint import load_model
from yolact.data import ensure_shapes_dataset
from yolact.config import get_config
from yolact.recipe import recipe_model


@dataclass(frozen=True)
class VariantSpec:
    """A backend and precision. ``kind``: which tolerance applies in parity (fp32, reduced, int8), or
    ``comparison`` for another algorithm that parity reports but does not judge (traditional NMS).
    ``graph``: what the runtime variants load, the ONNX graph or the OpenVINO IR (python -m export --to
    openvino; its INT8 is NNCF's)."""

    name: str
    backend: str  # pytorch, onnxruntime, openvino, tensorrt
    precision: str  # fp32, fp16, bf16, int8
    kind: str
    nms: str = "fast"
    compiled: bool = False
    graph: str = "onnx"  # onnx, ir


SPECS = {
    spec.name: spec
    for spec in (
        VariantSpec("pytorch_fp32", "pytorch", "fp32", "fp32"),
        VariantSpec("pytorch_fp32_traditional_nms", "pytorch", "fp32", "comparison", nms="traditional"),
        VariantSpec("pytorch_fp16", "pytorch", "fp16", "reduced"),
        VariantSpec("pytorch_compiled_fp16", "pytorch", "fp16", "reduced", compiled=True),
        VariantSpec("onnxruntime_fp32", "onnxruntime", "fp32", "fp32"),
        VariantSpec("onnxruntime_int8", "onnxruntime", "int8", "int8"),
        VariantSpec("openvino_f32", "openvino", "fp32", "fp32"),
        VariantSpec("openvino_bf16", "openvino", "bf16", "reduced"),
        VariantSpec("openvino_int8", "openvino", "int8", "int8"),
        VariantSpec("openvino_ir_f32", "openvino", "fp32", "fp32", graph="ir"),
        VariantSpec("openvino_ir_bf16", "openvino", "bf16", "reduced", graph="ir"),
        VariantSpec("openvino_ir_int8", "openvino", "int8", "int8", graph="ir"),
        VariantSpec("tensorrt_fp16", "tensorrt", "fp16", "reduced"),
        VariantSpec("tensorrt_int8", "tensorrt", "int8", "int8"),
    )
}
REFERENCE = "pytorch_fp32"


def skip_reason(spec: VariantSpec, device: str, model_family: str) -> str | None:
    """Why ``spec`` cannot run here, for a model of ``model_family`` (yolact, yolact++; None: it can)."""
    cuda = device.startswith("cuda")
    if spec.backend == "pytorch":
        if spec.precision == "fp16" and not cuda:
            return "PyTorch FP16 is timed on CUDA only (CPU half convolutions are slow reference kernels)"
        if spec.compiled and not cuda:
            return "torch.compile with CUDA graphs needs a CUDA device"
        return None
    if spec.backend == "tensorrt":
        return None if importlib.util.find_spec("tensorrt") else "TensorRT is not installed (pip install tensorrt, NVIDIA's index)"
    if importlib.util.find_spec(spec.backend) is None:
        return f"{spec.backend} is not installed"
    if cuda and spec.backend == "openvino":
        return "OpenVINO runs on Intel CPUs and GPUs, not CUDA"
    if spec.precision == "bf16" and spec.backend == "openvino" and not _cpu_has_bf16():
        return "this CPU has no native bf16 (OpenVINO would emulate it)"
    if spec.backend == "openvino" and spec.graph == "onnx" and model_family == "yolact++":
        return "OpenVINO's ONNX frontend rejects DeformConv (YOLACT++): the openvino_ir variants run the IR"
    if spec.graph == "ir" and spec.precision == "int8" and importlib.util.find_spec("nncf") is None:
        return "nncf is not installed (pip install nncf)"
    return None


def _cpu_has_bf16() -> bool:
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def load_or_recipe(config: str, weights: Path | None, device: str) -> Yolact:
    """Trained weights when given; else the authors' recipe weights, which fill every detection slot
    (random weights detect nothing and would flatter the post-processing)."""
    model = load_model(weights, config, device) if weights else recipe_model(get_config(config)).to(device)
    return model.eval()


@dataclass(frozen=True)
class GraphFiles:
    """Where the exported graphs of ``config`` lie in ``folder``, made once and shared by every variant:
    ONNX FP32 and INT8 QDQ, OpenVINO IR FP32 and NNCF INT8."""

    folder: Path
    config: str

    def path(self, graph: str, int8: bool) -> Path:
        suffix = {"onnx": ".onnx", "ir": ".xml"}[graph]
        return self.folder / f"{self.config}{'_int8' if int8 else ''}{suffix}"

    def of(self, spec: VariantSpec) -> Path:
        return self.path(spec.graph, spec.precision == "int8")


@dataclass(frozen=True)
class Int8Recipe:
    """How the INT8 graph is calibrated (``export.quantize.quantize_int8``), on the embedded train split."""

    images: int = 64
    method: str = "minmax"
    keep_ends_fp32: bool = False

    def record(self) -> dict:
        """The recipe as a results file states it, with what it quantizes."""
        return {
            **asdict(self),
            "quantized": f"the network, first to final convolution: {', '.join(QUANTIZED_OPS)}",
            "openvino_ir_int8": "NNCF post-training INT8 of the same part of the IR, on the same images (its own calibration)",
        }


def export_graphs(model: Yolact, folder: Path, specs: list[VariantSpec], int8: Int8Recipe) -> GraphFiles:
    """The graphs the runtime variants among ``specs`` load, of ``model`` in ``folder``: the ONNX graph (for
    its own variants and its INT8), its INT8 QDQ, the OpenVINO IR and its NNCF INT8, each calibrated on the
    same images."""
    files = GraphFiles(folder, model.cfg.name)
    needed = {(spec.graph, spec.precision == "int8") for spec in specs if spec.backend != "pytorch"}
    model = model.cpu()
    if {("onnx", False), ("onnx", True)} & needed:
        export_onnx(model, files.path("onnx", False))
    if ("onnx", True) in needed:
        quantize_int8(
            files.path("onnx", False), files.path("onnx", True), calibration_files(None, int8.images), int8.method, int8.keep_ends_fp32
        )
    if ("ir", False) in needed:
        export_openvino(model, files.path("ir", False))
    if ("ir", True) in needed:
        quantize_openvino(model, files.path("ir", True), calibration_files(None, int8.images))
    return files


def add_int8_options(parser, default_images: int) -> None:
    parser.add_argument("--calib-images", type=int, default=default_images, help="INT8 calibration images (embedded train split)")
    parser.add_argument("--calib-method", choices=CALIBRATION_METHODS, default="minmax", help="INT8 activation calibration")
    parser.add_argument("--int8-keep-ends", action="store_true", help="INT8: first and final convolutions stay FP32")


def int8_recipe(args) -> Int8Recipe:
    return Int8Recipe(args.calib_images, args.calib_method, args.int8_keep_ends)


class Variant:
    """A spec made runnable: ``graph(batch) -> raw``, ``paste(raw, i, h, w)`` -> one image's detections as
    the variant keeps them (``yolact.ImageDetections`` with dense masks, or ``runtime.Detections`` with
    compact ones), ``as_image_detections`` from those to ``ImageDetections``, and ``prepare(batch)`` for the
    part of decoding that moves images to the device."""

    def __init__(
        self,
        spec: VariantSpec,
        executed_on: str,
        prepare: Callable,
        graph: Callable,
        paste: Callable,
        num_dets: Callable[[Any], np.ndarray],
        synchronize: Callable[[], None] = lambda: None,
        as_image_detections: Callable[[Any], ImageDetections] = lambda dets: dets,
    ):
        self.spec = spec
        self.executed_on = executed_on
        self.prepare = prepare
        self.graph = graph
        self.paste = paste
        self.num_dets = num_dets
        self.synchronize = synchronize
        self.as_image_detections = as_image_detections

    def detect(self, images: list[np.ndarray]) -> list[ImageDetections]:
        """Final detections of same-size images (one batch) or of images of any size (one at a time)."""
        if len({image.shape for image in images}) == 1:
            raw = self.graph(self.prepare(np.stack(images)))
            return [self.as_image_detections(self.paste(raw, i, *image.shape[:2])) for i, image in enumerate(images)]
        return [self.detect([image])[0] for image in images]


def open_variant(
    spec: VariantSpec, load_model: Callable[[], Yolact], graphs: GraphFiles | None, device: str, threads: int | None
) -> Variant:
    """``spec`` ready to run: PyTorch variants on a model from ``load_model`` (called only for them, so that
    the others hold no PyTorch weights), the others on the exported ``graphs``."""
    if spec.backend == "pytorch":
        return _pytorch_variant(spec, load_model(), device)
    precision = "fp32" if spec.precision == "int8" else spec.precision  # the INT8 graph's other ops stay FP32
    segmenter = runtime.Segmenter(
        graphs.of(spec),
        backend=spec.backend,
        device=device if spec.backend != "openvino" else None,
        precision=precision,
        score_threshold=0.0,
        threads=threads,
    )

    def as_image_detections(dets: runtime.Detections) -> ImageDetections:
        return ImageDetections(dets.boxes, dets.scores, dets.class_ids, dets.masks, dets.mask_scores)

    return Variant(
        spec,
        segmenter.executed_on,
        lambda batch: batch,
        segmenter.infer,
        runtime.paste_detections,
        lambda raw: np.asarray(raw.num_dets),
        as_image_detections=as_image_detections,
    )


def _pytorch_variant(spec: VariantSpec, model: Yolact, device: str) -> Variant:
    torch_device = torch.device(device)
    model = model.to(torch_device).eval()
    end_to_end = EndToEnd(model, spec.nms).eval()
    half = spec.precision == "fp16"
    if half:
        end_to_end = end_to_end.to(memory_format=torch.channels_last)
    if spec.compiled:
        # CUDA graphs remove the per-kernel launch cost that dominates a batch-1 forward on a fast GPU.
        end_to_end = torch.compile(end_to_end, mode="reduce-overhead")

    def synchronize() -> None:
        if torch_device.type == "cuda":
            torch.cuda.synchronize(torch_device)

    def prepare(batch: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(batch).to(torch_device, non_blocking=True)

    # Under inference_mode, torch.compile fails its own guard on the priors (a tensor made from NumPy).
    no_grad = torch.no_grad if spec.compiled else torch.inference_mode

    def graph(images: torch.Tensor):
        autocast = torch.autocast(torch_device.type, dtype=torch.float16) if half else contextlib.nullcontext()
        with no_grad(), autocast:
            result = end_to_end(images)
        # A CUDA graph replay overwrites its outputs: keep this batch's.
        return type(result)(*(t.clone() for t in result)) if spec.compiled else result

    @torch.inference_mode()
    def paste(result, index: int, height: int, width: int) -> ImageDetections:
        return to_image(result, index, height, width)

    name = torch.cuda.get_device_name(torch_device) if torch_device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    return Variant(spec, name, prepare, graph, paste, lambda result: result.num_dets.cpu().numpy(), synchronize)


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


def add_dataset_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=Path, help="image folder of a COCO dataset (default: embedded val split)")
    parser.add_argument("--annotations", type=Path, help="its COCO annotation JSON")


def resolve_dataset(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``--images`` and ``--annotations`` both or neither; neither means the embedded val split."""
    if (args.images is None) != (args.annotations is None):
        parser.error("--images and --annotations go together")
    if args.images is None:
        shapes = ensure_shapes_dataset()
        args.images, args.annotations = shapes.val_images, shapes.val_annotations
