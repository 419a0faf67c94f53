"""Evaluates a checkpoint: COCO box and mask AP, printed and written as JSON (``python -m eval --weights W``).

Without ``--images/--annotations`` it evaluates on the val split of the embedded shapes dataset.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

from command_line import UsageError, entry_parser, entry_point
from contract.files import write_text
from yolact import CheckpointError, load_model
from yolact.data import DatasetError, ensure_shapes_dataset
from yolact.evaluation import evaluate, format_table

PROG = "python -m eval"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = entry_parser(PROG, __doc__)
    parser.add_argument("--weights", required=True, type=Path, help="checkpoint (.pth) to evaluate")
    parser.add_argument("--config", help="config name; default: the one saved in the checkpoint")
    parser.add_argument("--images", type=Path, help="image folder (default: embedded shapes val split)")
    parser.add_argument("--annotations", type=Path, help="COCO instances JSON of --images")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-images", type=int, help="evaluate only the first N images")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument(
        "--out", type=Path, default=Path("results.json"), help="results JSON; the COCO detections go beside it as <name>_detections.json"
    )
    args = parser.parse_args(argv)
    if (args.images is None) != (args.annotations is None):
        parser.error("--images and --annotations go together")
    if args.batch_size < 1 or (args.max_images is not None and args.max_images < 1):
        parser.error("--batch-size and --max-images must be positive")
    return args


def run(args: argparse.Namespace) -> None:
    model = load_model(args.weights, args.config, args.device)
    if args.images is None:
        shapes = ensure_shapes_dataset()
        args.images, args.annotations = shapes.val_images, shapes.val_annotations
    result = evaluate(model, args.images, args.annotations, args.batch_size, args.max_images)
    print(format_table(result.metrics))
    detections_file = args.out.with_name(f"{args.out.stem}_detections.json")
    write_text(detections_file, json.dumps(result.detections, allow_nan=False))
    summary = {
        # NaN (no ground truth of that size) as null: strict JSON readers reject NaN.
        "metrics": {name: None if math.isnan(value) else value for name, value in result.metrics.items()},
        "config": model.cfg.name,
        "weights": str(args.weights),
        "dataset": {"images": str(args.images), "annotations": str(args.annotations), "max_images": args.max_images},
        "detections": str(detections_file),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_text(args.out, json.dumps(summary, allow_nan=False))
    print(f"wrote {args.out} and {detections_file}")


@entry_point(PROG, bad_input=(CheckpointError, DatasetError))
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device available")
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
