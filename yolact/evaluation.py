"""COCO box and mask AP of a model with pycocotools, the way the authors evaluate (no score threshold)."""

from __future__ import annotations

import contextlib
import io
import math
import os
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Iterable

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tqdm import tqdm

from .data import CocoDataset, DatasetError, eval_transform
from .inference import ImageDetections, predict
from .model import Yolact

# COCOeval.stats positions of the reported numbers, per metric-name suffix.
_STATS = {"AP": 0, "AP50": 1, "AP75": 2, "APs": 3, "APm": 4, "APl": 5}
# Each task: its pycocotools IoU type and the score that ranks its results. Boxes rank by box score and masks
# by mask score, as the authors' eval.py does; "mask_box_score" scores the same masks by box score, the model
# without YOLACT++'s re-scoring (reported only when re-scoring changed some score).
_TASKS = {"box": ("bbox", "score"), "mask": ("segm", "mask_score"), "mask_box_score": ("segm", "score")}
METRIC_NAMES = tuple(f"{kind}/{name}" for kind in ("box", "mask") for name in _STATS)


@dataclass
class EvalResult:
    """``metrics``: ``box/AP`` ... ``mask/APl`` as fractions (NaN where the ground truth has no object of
    that size); ``detections``: the COCO results list (both bbox and segmentation per detection)."""

    metrics: dict[str, float]
    detections: list[dict[str, Any]] = field(repr=False)


def coco_detections(image_id: int, dets: ImageDetections, category_ids: list[int]) -> list[dict[str, Any]]:
    """COCO result entries for one image: bbox [x, y, w, h] in pixels, score (the box score), mask_score,
    COCO category id and the mask as RLE (counts as str, JSON-ready)."""
    if len(dets) == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(dets.masks.transpose(1, 2, 0).astype(np.uint8)))
    x1, y1, x2, y2 = dets.boxes.T.astype(np.float64)
    return [
        {
            "image_id": int(image_id),
            "category_id": int(category_ids[int(dets.class_ids[i])]),
            "bbox": [float(x1[i]), float(y1[i]), float(x2[i] - x1[i]), float(y2[i] - y1[i])],
            "score": float(dets.scores[i]),
            "mask_score": float(dets.mask_scores[i]),
            "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
        }
        for i, rle in enumerate(rles)
    ]


def score_detections(coco_gt: COCO, detections: list[dict[str, Any]], image_ids: Iterable[int] | None = None) -> dict[str, float]:
    """Box and mask AP of ``detections`` against ``coco_gt`` (restricted to ``image_ids`` if given): the
    ``METRIC_NAMES`` keys as fractions, plus the ``mask_box_score/*`` ones (masks ranked by box score) when
    re-scoring changed some mask's score; all zero when there are no detections."""
    if not detections:
        return {name: 0.0 for name in METRIC_NAMES}
    tasks = dict(_TASKS)
    if all(det["mask_score"] == det["score"] for det in detections):
        del tasks["mask_box_score"]
    metrics = {}
    for kind, (iou_type, score_key) in tasks.items():
        # Separate result sets per task, as the authors write them: given a bbox, loadRes would take the
        # box area for the mask's size range.
        region = "bbox" if iou_type == "bbox" else "segmentation"
        results = [
            {"image_id": det["image_id"], "category_id": det["category_id"], region: det[region], "score": det[score_key]}
            for det in detections
        ]
        stats = _cocoeval_stats(coco_gt, results, iou_type, image_ids)
        for name, index in _STATS.items():
            metrics[f"{kind}/{name}"] = float(stats[index]) if stats[index] >= 0 else math.nan
    return metrics


def _cocoeval_stats(coco_gt: COCO, results: list[dict], iou_type: str, image_ids: Iterable[int] | None) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and its own table
        coco_dt = coco_gt.loadRes(results)
        evaluator = COCOeval(coco_gt, coco_dt, iou_type)
        if image_ids is not None:
            evaluator.params.imgIds = sorted(image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


def evaluate(
    model: Yolact,
    image_dir: str | os.PathLike,
    annotation_file: str | os.PathLike,
    batch_size: int = 8,
    max_images: int | None = None,
    progress: bool = True,
) -> EvalResult:
    """Run ``model`` over the images of a COCO annotation file (the first ``max_images`` by id) and score it.

    Raises ``DatasetError`` for unusable files or when the model's class count differs from the dataset's.
    """
    dataset = CocoDataset(image_dir, annotation_file, eval_transform(model.cfg))
    if model.cfg.num_classes != len(dataset.class_names):
        raise DatasetError(
            f"{annotation_file}: has {len(dataset.class_names)} categories but config {model.cfg.name!r} "
            f"predicts {model.cfg.num_classes} classes"
        )
    return evaluate_detector(partial(predict, model), dataset, batch_size, max_images, progress)


def evaluate_detector(
    detect_images: Callable[[list[np.ndarray]], list[ImageDetections]],
    dataset: CocoDataset,
    batch_size: int = 8,
    max_images: int | None = None,
    progress: bool = True,
) -> EvalResult:
    """Score any detector (BGR uint8 images -> their detections: PyTorch, onnxruntime, ...) on the first
    ``max_images`` images of ``dataset``, read and passed ``batch_size`` at a time."""
    num_images = len(dataset) if max_images is None else min(max_images, len(dataset))
    detections: list[dict[str, Any]] = []
    with tqdm(total=num_images, desc="evaluating", unit="img", disable=not progress) as bar:
        for start in range(0, num_images, batch_size):
            indices = range(start, min(start + batch_size, num_images))
            images = [dataset.read_image(i) for i in indices]
            for i, dets in zip(indices, detect_images(images)):
                detections.extend(coco_detections(dataset.image_ids[i], dets, dataset.category_ids))
            bar.update(len(indices))
    metrics = score_detections(dataset.coco, detections, dataset.image_ids[:num_images])
    return EvalResult(metrics, detections)


def format_table(metrics: dict[str, float]) -> str:
    """The metrics as a percent table, one row per task::

          AP   AP50   AP75    APs    APm    APl
    box  12.34 ...
    """
    kinds = [kind for kind in _TASKS if f"{kind}/AP" in metrics]
    width = max(len(kind) for kind in kinds)
    header = " " * (width + 1) + "".join(f"{name:>7}" for name in _STATS)
    rows = [f"{kind:>{width}} " + "".join(f"{_percent(metrics.get(f'{kind}/{name}', math.nan)):>7}" for name in _STATS) for kind in kinds]
    return "\n".join([header, *rows])


def _percent(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.2f}"
