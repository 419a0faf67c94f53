"""``python -m benchmarks.mask_rescoring --weights W``: how well a trained YOLACT++ model's mask-IoU head
predicts the quality of its masks, the thing fast mask re-scoring rests on.

Re-scoring ranks each mask by its box score times the IoU the head predicts for it. It helps only where that
prediction knows more about the mask than the box score does. For every detection above ``--min-score`` on a
COCO val set this measures the mask's actual IoU with the best ground truth of its class, and reports the
Pearson correlation of the actual IoU with the predicted IoU, the box score and the mask score, and the share
of predicted IoUs that are exactly 0 (the head's final ReLU). Writes
``benchmarks/results/mask_rescoring_<machine>_<config>_<date>.json``, ``.md`` and a ``.png`` scatter plot of
predicted against actual IoU.
"""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path
from typing import Sequence

import cv2
import matplotlib.pyplot as plt
import numpy as np
from tqdm import tqdm

from command_line import entry_parser, entry_point, positive_int
from train.curves import save_figure
from yolact.checkpoint import load_model
from yolact.data import CocoDataset, DatasetError, eval_transform
from contract.files import write_text
from yolact.inference import predict

from .machine import cpu_description, machine_details, machine_tag
from .reports import report_stem
from .variants import add_dataset_options, resolve_dataset, set_threads

PROG = "python -m benchmarks.mask_rescoring"
RESULTS = Path(__file__).parent / "results"


def detection_quality(model, dataset: CocoDataset, max_images: int | None, min_score: float) -> np.ndarray:
    """[N, 3]: box score, predicted IoU (mask score / box score) and actual mask IoU of every detection
    above ``min_score``; the actual IoU is with the best ground-truth mask of the detection's class (0 if none)."""
    coco = dataset.coco
    rows = []
    for image_id in tqdm(dataset.image_ids[:max_images], desc="images", unit="img"):
        info = coco.loadImgs(image_id)[0]
        image = cv2.imread(str(dataset.image_dir / info["file_name"]))
        if image is None:
            raise SystemExit(f"--images {dataset.image_dir}: cannot read {info['file_name']}")
        dets = predict(model, [image])[0].above(min_score)
        truths = [
            (dataset.category_ids.index(a["category_id"]), coco.annToMask(a).astype(bool))
            for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=False))
        ]
        for label, score, mask_score, mask in zip(dets.class_ids, dets.scores, dets.mask_scores, dets.masks):
            ious = [(mask & truth).sum() / max(1, (mask | truth).sum()) for truth_label, truth in truths if truth_label == label]
            rows.append((score, mask_score / max(score, 1e-12), max(ious, default=0.0)))
    return np.asarray(rows, dtype=np.float64).reshape(-1, 3)


def summary(rows: np.ndarray) -> dict:
    score, predicted, actual = rows.T

    def correlation(a: np.ndarray) -> float:
        return round(float(np.corrcoef(a, actual)[0, 1]), 3) if len(actual) > 1 and actual.std() > 0 and a.std() > 0 else float("nan")

    return {
        "detections": len(rows),
        "corr_actual_iou_with": {
            "predicted_iou": correlation(predicted),
            "box_score": correlation(score),
            "mask_score": correlation(score * predicted),
        },
        "predicted_iou_zero_share": round(float((predicted == 0).mean()), 3) if len(rows) else float("nan"),
        "mean": {"predicted_iou": round(float(predicted.mean()), 3), "actual_iou": round(float(actual.mean()), 3)},
    }


def markdown(report: dict) -> str:
    s = report["summary"]
    corr = s["corr_actual_iou_with"]
    return (
        f"Mask re-scoring of {report['config']} ({report['weights']}), {s['detections']} detections with box score > "
        f"{report['min_score']} on {report['images']} images, {report['where']}\n\n"
        "| ranks the masks by | correlation with the mask's actual IoU |\n|---|---|\n"
        f"| predicted IoU (mask-IoU head) | {corr['predicted_iou']:.3f} |\n| box score | {corr['box_score']:.3f} |\n"
        f"| mask score (box score x predicted IoU) | {corr['mask_score']:.3f} |\n\n"
        f"Predicted IoU: mean {s['mean']['predicted_iou']:.3f} (actual {s['mean']['actual_iou']:.3f}), exactly 0 for "
        f"{100 * s['predicted_iou_zero_share']:.1f}% of the detections.\n"
    )


def scatter(rows: np.ndarray, title: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 5))
    points = ax.scatter(rows[:, 2], rows[:, 1], c=rows[:, 0], s=6, cmap="viridis", vmin=0, vmax=1)
    ax.plot([0, 1], [0, 1], color="#999999", lw=1)
    ax.set(xlabel="actual mask IoU", ylabel="predicted IoU (mask-IoU head)", xlim=(0, 1), ylim=(0, 1.05), title=title)
    fig.colorbar(points, ax=ax, label="box score")
    save_figure(fig, path)


@entry_point(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    parser = entry_parser(PROG, __doc__)
    parser.add_argument("--weights", type=Path, required=True, help="a trained YOLACT++ checkpoint")
    parser.add_argument("--config", help="config name (default: the checkpoint's own)")
    add_dataset_options(parser)
    parser.add_argument("--max-images", type=positive_int, help="only the first N images")
    parser.add_argument("--min-score", type=float, default=0.05, help="box score above which detections count")
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if not args.weights.is_file():
        parser.error(f"--weights {args.weights}: no such file")
    set_threads(args.threads)
    model = load_model(args.weights, args.config, "cpu")
    if not model.cfg.use_maskiou:
        parser.error(f"--weights {args.weights}: {model.cfg.name} has no mask-IoU head (not a YOLACT++ model)")
    resolve_dataset(parser, args)
    try:
        dataset = CocoDataset(args.images, args.annotations, eval_transform(model.cfg))
    except DatasetError as exc:
        parser.error(str(exc))
    started = datetime.datetime.now(datetime.timezone.utc)
    rows = detection_quality(model, dataset, args.max_images, args.min_score)
    machine = {**machine_details(), "threads": args.threads}
    report = {
        "config": model.cfg.name,
        "weights": str(args.weights),
        "annotations": str(args.annotations),
        "images": len(dataset.image_ids[: args.max_images]),
        "min_score": args.min_score,
        "where": f"{cpu_description(machine)}, {args.threads} threads",
        "machine": machine,
        "summary": summary(rows),
    }
    stem = report_stem(args.out_dir, "mask_rescoring", machine_tag(machine), started, model.cfg.name)
    write_text(stem.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    write_text(stem.with_suffix(".md"), markdown(report))
    scatter(rows, f"{model.cfg.name}: predicted vs actual mask IoU", stem.with_suffix(".png"))
    print(markdown(report))
    print(f"wrote {stem}.json, .md and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
