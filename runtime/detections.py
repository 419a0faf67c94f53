"""The final-image step without torch: from the graph's padded outputs to per-image detections with pixel
boxes and boolean masks at the image size.

It gives the numbers of ``yolact.to_image`` (PyTorch's bilinear upsampling with ``align_corners=False``,
then ``> 0.5``; boxes scaled, ordered, clamped and truncated like ``sanitize_coordinates``) but upsamples
a mask only where it can be non-zero: the support of its cropped prototype cells grown by the one cell that
bilinear taps reach, mapped to image pixels, with OpenCV's bilinear warp. No full-image float plane is ever
made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple, Sequence

import cv2
import numpy as np
import pycocotools.mask as mask_utils

from contract import GraphOutputs

MASK_THRESHOLD = 0.5
COCO_TASKS = ("bbox", "segm")


class RawOutputs(GraphOutputs):
    """The graph's outputs (fields: :class:`contract.GraphOutputs`) as numpy arrays: num_dets [B] int32,
    boxes [B, K, 4] float32 normalised x1y1x2y2, scores [B, K] float32, classes [B, K] int32 (-1 in padding),
    masks [B, K, Hp, Wp] float32 cropped mask probabilities, mask_scores [B, K] float32."""

    __slots__ = ()


@dataclass
class Detections:
    """The detections of one image (N of them, image height x width), best score first.

    boxes [N, 4] int64 pixel x1y1x2y2, scores [N] float32 box scores, class_ids [N] int64, class_names [N]
    str, masks [N, height, width] bool, mask_scores [N] float32 (what ranks the masks: YOLACT++'s box score
    x predicted mask IoU, otherwise the box score).
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    class_names: list[str]
    masks: np.ndarray
    mask_scores: np.ndarray
    height: int
    width: int
    _rles: list[dict] | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.scores)

    def rle(self) -> list[dict[str, Any]]:
        """The masks as COCO RLE dicts (pycocotools: ``size`` [h, w], ``counts`` bytes), encoded once."""
        if self._rles is None:
            # pycocotools wants [H, W, N] uint8 in Fortran order.
            self._rles = mask_utils.encode(np.asfortranarray(self.masks.transpose(1, 2, 0), dtype=np.uint8)) if len(self) else []
        return self._rles

    def to_json(self, image_name: str) -> dict[str, Any]:
        """The per-image JSON record, the format ``python -m yolact.predict`` and the C++ runtime write."""
        rles = self.rle()
        areas = mask_utils.area(rles) if rles else []
        records = [
            {
                "class_id": int(self.class_ids[i]),
                "class_name": self.class_names[i],
                "score": round(float(self.scores[i]), 6),
                "mask_score": round(float(self.mask_scores[i]), 6),
                "box_xyxy": [int(v) for v in self.boxes[i]],
                "mask_area": int(areas[i]),
                "mask_rle": {"size": [int(v) for v in rles[i]["size"]], "counts": rles[i]["counts"].decode("ascii")},
            }
            for i in range(len(self))
        ]
        return {"image": image_name, "height": self.height, "width": self.width, "detections": records}

    def to_coco(self, image_id: int | str, task: str, category_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """COCO results entries for ``task``: ``bbox`` ([x, y, w, h] pixels, scored by the box score) or
        ``segm`` (RLE segmentation, scored by the mask score), one result set per task as COCO evaluates
        them. ``category_ids`` maps a class id to the dataset's category id; by default class id + 1
        (contiguous, 1-based)."""
        if task not in COCO_TASKS:
            raise ValueError(f"COCO task {task!r}: choose one of {', '.join(COCO_TASKS)}")
        rles = self.rle() if task == "segm" else []
        entries = []
        for i in range(len(self)):
            class_id = int(self.class_ids[i])
            entry: dict[str, Any] = {
                "image_id": image_id,
                "category_id": int(category_ids[class_id]) if category_ids is not None else class_id + 1,
            }
            if task == "bbox":
                x1, y1, x2, y2 = (float(v) for v in self.boxes[i])
                entry.update(bbox=[x1, y1, x2 - x1, y2 - y1], score=float(self.scores[i]))
            else:
                segmentation = {"size": [int(v) for v in rles[i]["size"]], "counts": rles[i]["counts"].decode("ascii")}
                entry.update(segmentation=segmentation, score=float(self.mask_scores[i]))
            entries.append(entry)
        return entries


class AxisTaps(NamedTuple):
    """Bilinear taps along one axis from ``source`` cells to ``output`` pixels, as PyTorch computes them
    (float32, half-pixel centres, source position clamped at 0, upper tap clamped to the last cell): pixel i
    is low_weight[i] * cell low[i] + high_weight[i] * cell high[i]. low and high never decrease."""

    low: np.ndarray
    high: np.ndarray
    low_weight: np.ndarray
    high_weight: np.ndarray

    def pixels_reaching(self, first_cells: np.ndarray, last_cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per cell range [first, last]: (start, stop) of the pixels with a tap on a cell in it; all others
        read only zero cells."""
        return np.searchsorted(self.high, first_cells, side="left"), np.searchsorted(self.low, last_cells, side="right")


@lru_cache(maxsize=64)
def axis_taps(source: int, output: int) -> AxisTaps:
    scale = np.float32(source) / np.float32(output)
    position = np.maximum(scale * (np.arange(output, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5), np.float32(0))
    low = position.astype(np.int64)
    high_weight = position - low.astype(np.float32)
    return AxisTaps(low, np.minimum(low + 1, source - 1), np.float32(1) - high_weight, high_weight)


def paste_masks(cells: np.ndarray, rows: AxisTaps, cols: AxisTaps, out: np.ndarray) -> None:
    """Write each of ``cells`` [N, Hp, Wp] (float32) upsampled and binarised into the all-False ``out``
    [N, H, W], only over the pixels its non-zero cells reach.

    The upsampling is PyTorch's bilinear interpolation in its order of float32 operations (along the width,
    then along the height), so the masks equal ``yolact.to_image``'s; it runs over each mask's region alone, on
    the prototype rows that region reads. (OpenCV's warpAffine did this region by region too, but its
    fixed-point coordinates flipped 0.08% of the pixels and it took longer.)"""
    # Each mask's support (x, y, width, height in cells; width 0 when it has none).
    supports = np.array([cv2.boundingRect(nonzero) for nonzero in (cells != 0).view(np.uint8)], dtype=np.int64)
    first_col, first_row, support_cols, support_rows = supports.reshape(-1, 4).T
    y_start, y_stop = rows.pixels_reaching(first_row, first_row + support_rows - 1)
    x_start, x_stop = cols.pixels_reaching(first_col, first_col + support_cols - 1)
    # Downsampling to a tiny image can step over a support.
    reached = (support_cols > 0) & (y_stop > y_start) & (x_stop > x_start)
    for n in np.flatnonzero(reached):
        ys, xs = slice(y_start[n], y_stop[n]), slice(x_start[n], x_stop[n])
        band_start = rows.low[ys.start]
        band = cells[n, band_start : rows.high[ys.stop - 1] + 1]
        along_width = band[:, cols.low[xs]]
        along_width *= cols.low_weight[xs]
        high = band[:, cols.high[xs]]
        high *= cols.high_weight[xs]
        along_width += high
        upsampled = along_width[rows.low[ys] - band_start]
        upsampled *= rows.low_weight[ys, None]
        high = along_width[rows.high[ys] - band_start]
        high *= rows.high_weight[ys, None]
        upsampled += high
        np.greater(upsampled, MASK_THRESHOLD, out=out[n, ys, xs])


def pixel_boxes(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Normalised x1y1x2y2 [N, 4] -> int64 pixels: scaled, each pair ordered, the low side clamped at 0 and
    the high side at the image size, truncated toward zero (``sanitize_coordinates`` then ``.long()``)."""
    scaled = boxes.astype(np.float32) * np.array([width, height, width, height], dtype=np.float32)
    low = np.maximum(np.minimum(scaled[:, :2], scaled[:, 2:]), np.float32(0))
    high = np.minimum(np.maximum(scaled[:, :2], scaled[:, 2:]), np.array([width, height], dtype=np.float32))
    return np.concatenate((low, high), axis=1).astype(np.int64)


def paste_detections(
    raw: RawOutputs,
    index: int,
    height: int,
    width: int,
    score_threshold: float = 0.0,
    class_names: Sequence[str] | None = None,
) -> Detections:
    """The detections of image ``index`` of a batch scoring above ``score_threshold``, at ``height`` x
    ``width`` pixels. ``class_names`` (index = class id) names them; without it a name is the class id."""
    count = int(raw.num_dets[index])
    keep = np.flatnonzero(raw.scores[index, :count] > score_threshold)
    class_ids = raw.classes[index, keep].astype(np.int64)
    masks = np.zeros((len(keep), height, width), dtype=bool)
    prototypes = raw.masks[index]
    rows = axis_taps(prototypes.shape[-2], height)
    cols = axis_taps(prototypes.shape[-1], width)
    paste_masks(prototypes[keep], rows, cols, masks)
    return Detections(
        boxes=pixel_boxes(raw.boxes[index, keep], height, width),
        scores=raw.scores[index, keep].astype(np.float32),
        mask_scores=raw.mask_scores[index, keep].astype(np.float32),
        class_ids=class_ids,
        class_names=[class_names[c] if class_names is not None else str(c) for c in class_ids],
        masks=masks,
        height=height,
        width=width,
    )
