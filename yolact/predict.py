"""Segments images with a checkpoint and writes, per image, ``<stem>.png`` (masks, boxes, class names and scores drawn over the image) and
``<stem>.json`` (the detections, masks as COCO RLE), and with ``--prototypes`` ``<stem>_prototypes.png`` (the
image's prototype masks as a grid of heat maps). Images go through the network in batches.

``python -m yolact.predict IMAGE... --weights W [--config C] --out DIR``
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import pycocotools.mask as mask_utils
import torch

from command_line import UsageError, entry_parser, entry_point
from contract.files import write_text

from .checkpoint import CheckpointError, load_model
from .config import CONFIGS
from .fileio import ImageReadError, read_bgr_image
from .inference import ImageDetections, predict_with_prototypes
from .visualize import draw_detections, prototype_grid, save_png


PROG = "python -m yolact.predict"


def detections_json(path: Path, image: np.ndarray, dets: ImageDetections, class_names: Sequence[str]) -> dict:
    records = []
    for i in range(len(dets)):
        rle = mask_utils.encode(np.asfortranarray(dets.masks[i].astype(np.uint8)))
        records.append(
            {
                "class_id": int(dets.class_ids[i]),
                "class_name": class_names[dets.class_ids[i]],
                "score": round(float(dets.scores[i]), 6),
                "mask_score": round(float(dets.mask_scores[i]), 6),
                "box_xyxy": [int(v) for v in dets.boxes[i]],
                "mask_area": int(dets.masks[i].sum()),
                "mask_rle": {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")},
            }
        )
    return {"image": str(path), "height": image.shape[0], "width": image.shape[1], "detections": records}


def write_outputs(out_dir: Path, path: Path, image: np.ndarray, dets: ImageDetections, class_names: Sequence[str]):
    save_png(out_dir / f"{path.stem}.png", draw_detections(image, dets, class_names))
    write_text(out_dir / f"{path.stem}.json", json.dumps(detections_json(path, image, dets, class_names), indent=1))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = entry_parser(PROG, __doc__)
    parser.add_argument("images", nargs="+", type=Path, help="image files (anything OpenCV reads)")
    parser.add_argument("--weights", required=True, type=Path, help="checkpoint (.pth), the authors' or ours")
    parser.add_argument("--config", choices=sorted(CONFIGS), help="model config (default: the checkpoint's own)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--score-threshold", type=float, default=0.3, help="drop detections scoring at or below")
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    parser.add_argument("--nms", choices=("fast", "traditional"), default="fast")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--prototypes", action="store_true", help="also write <stem>_prototypes.png, the image's prototype masks as a grid")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    return args


@entry_point(PROG, bad_input=(CheckpointError, ImageReadError))
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    names = [p.stem for p in args.images]
    if len(set(names)) != len(names):
        raise UsageError("--out: two input images share a file name stem; their outputs would collide")
    images = [read_bgr_image(p) for p in args.images]
    model = load_model(args.weights, args.config, args.device)
    try:
        for start in range(0, len(images), args.batch_size):
            batch = images[start : start + args.batch_size]
            results, protos = predict_with_prototypes(model, batch, nms=args.nms)
            for path, image, dets, image_protos in zip(args.images[start:], batch, results, protos):
                write_outputs(args.out, path, image, dets.above(args.score_threshold), model.cfg.class_names)
                if args.prototypes:
                    save_png(args.out / f"{path.stem}_prototypes.png", prototype_grid(image_protos))
    except OSError as exc:
        raise UsageError(f"--out {args.out}: {exc.strerror or exc}") from None
    print(f"wrote {len(images)} overlays and detection files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
