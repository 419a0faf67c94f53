"""AP of the deployable variants on the embedded val split: FP32 and FP16 (CPU half) PyTorch, ONNX FP32 and
ONNX INT8 (QDQ) in onnxruntime. ``python -m benchmarks.export_accuracy --weights W [--max-images N]``.

Every variant ends in the same final-image step (``yolact.inference.to_image``) and the same scoring
(``yolact.evaluation``), so the differences are the graph's and the precision's alone.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime as ort
import torch

from benchmarks.machine import machine_details
from export.calibration import DEFAULT_NUM_IMAGES, calibration_files
from export.onnx_export import INPUT_NAME, export_onnx
from export.quantize import quantize_int8
from yolact import BatchResult, EndToEnd, ImageDetections, Yolact, load_model, predict, to_image
from yolact.data import CocoDataset, ensure_shapes_dataset, eval_transform
from yolact.evaluation import evaluate_detector
from yolact.fileio import write_text_atomic
from yolact.inference import batch_from_images

RESULTS = Path(__file__).parent / "results" / "export_accuracy.json"
Runner = Callable[[np.ndarray], ImageDetections]  # one uint8 BGR image [H, W, 3] -> its detections


def pytorch_runner(model: Yolact) -> Runner:
    return lambda image: predict(model, [image])[0]


def pytorch_half_runner(model: Yolact) -> Runner:
    """The whole model in float16 on the CPU; the preprocessed input is cast to half as well."""
    half = EndToEnd(model.half().eval())

    @torch.inference_mode()
    def run(image: np.ndarray) -> ImageDetections:
        result = half.from_network_input(batch_from_images([image], model).half())
        return to_image(result, 0, *image.shape[:2])

    return run


def onnx_runner(path: Path) -> Runner:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(image: np.ndarray) -> ImageDetections:
        outputs = session.run(None, {INPUT_NAME: image[None]})
        return to_image(BatchResult(*(torch.from_numpy(o) for o in outputs)), 0, *image.shape[:2])

    return run


def score(runner: Runner, dataset: CocoDataset, num_images: int) -> dict[str, float]:
    def detect_images(images: list[np.ndarray]) -> list[ImageDetections]:
        return [runner(image) for image in images]

    return evaluate_detector(detect_images, dataset, batch_size=1, max_images=num_images).metrics


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--config")
    parser.add_argument("--max-images", type=int)
    parser.add_argument("--calib-images", type=int, default=DEFAULT_NUM_IMAGES)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    shapes = ensure_shapes_dataset()
    model = load_model(args.weights, args.config)
    dataset = CocoDataset(shapes.val_images, shapes.val_annotations, eval_transform(model.cfg))
    num_images = len(dataset) if args.max_images is None else min(args.max_images, len(dataset))
    with tempfile.TemporaryDirectory() as scratch:
        fp32_onnx, int8_onnx = Path(scratch) / "fp32.onnx", Path(scratch) / "int8.onnx"
        export_onnx(model, fp32_onnx)
        quantize_int8(fp32_onnx, int8_onnx, calibration_files(shapes.train_images, args.calib_images))
        variants = {
            "pytorch_fp32": pytorch_runner(model),
            "onnx_fp32": onnx_runner(fp32_onnx),
            "onnx_int8_qdq": onnx_runner(int8_onnx),
            "pytorch_fp16_cpu": pytorch_half_runner(load_model(args.weights, args.config)),
        }
        metrics = {name: score(runner, dataset, num_images) for name, runner in variants.items()}
    baseline = metrics["pytorch_fp32"]
    report = {
        "weights": str(args.weights),
        "config": model.cfg.name,
        "images": num_images,
        "calibration_images": args.calib_images,
        "metrics": metrics,
        "delta_vs_pytorch_fp32": {
            name: {k: v - baseline[k] for k, v in values.items()} for name, values in metrics.items() if name != "pytorch_fp32"
        },
        "machine": machine_details(),
    }
    write_text_atomic(args.out, json.dumps(report, indent=2))
    for name, values in metrics.items():
        print(f"{name:18s} box/AP {values['box/AP']:.4f}  mask/AP {values['mask/AP']:.4f}")
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
