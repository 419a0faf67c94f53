"""The final-image step without torch: from the graph's padded outputs to per-image detections with pixel
boxes and boolean masks at the image size.

It gives the numbers of ``yolact.to_image`` (PyTorch's bilinear upsampling with ``align_corners=False``,
then ``> 0.5``; boxes scaled, ordered, clamped and truncated like ``sanitize_coordinates``) but upsamples
a mask only where it can be non-zero: the support of its cropped prototype cells grown by the one cell that
bilinear taps reach, mapped to image pixels, in numpy, in PyTorch's order of float32 operations. That region
is what a mask keeps (its crop, and the crop's offset in the image): no full-image plane is made unless a
caller asks for one (``Detections.masks``), and COCO RLE is computed from the crops.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple, Sequence

import cv2
import numpy as np
import pycocotools.mask as mask_utils

MASK_THRESHOLD = 0.5
COCO_TASKS = ("bbox", "segm")
SUPERVISION_INSTALL = 'pip install ".[video]"'
EMPTY_CROP = np.zeros((0, 0), dtype=bool)
EMPTY_CROP.flags.writeable = False


class RawOutputs(NamedTuple):
    """The graph's outputs for a batch of B images (K = the model's max detections):
    num_dets [B] int32, boxes [B, K, 4] float32 normalised x1y1x2y2, scores [B, K] float32,
    classes [B, K] int32 (-1 in padding), masks [B, K, Hp, Wp] float32 cropped mask probabilities,
    mask_scores [B, K] float32 (YOLACT++: box score x predicted mask IoU; otherwise the box scores)."""

    num_dets: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    masks: np.ndarray
    mask_scores: np.ndarray


class MaskCrop(NamedTuple):
    """One mask as it is stored: ``mask`` bool [h, w], the image's rows y..y+h-1 and columns x..x+w-1
    (``offset`` = (x, y)); every pixel outside it is False. h or w is 0 for a mask with no pixel there."""

    mask: np.ndarray
    offset: tuple[int, int]

    @property
    def region(self) -> tuple[slice, slice]:
        """(rows, columns) of the image the crop covers: ``plane[crop.region] = crop.mask``."""
        x, y = self.offset
        return slice(y, y + self.mask.shape[0]), slice(x, x + self.mask.shape[1])


def frame_runs(crop: np.ndarray, x: int, y: int, height: int, width: int) -> np.ndarray:
    """Uncompressed COCO RLE counts (int64: column-major run lengths, the first one of False pixels) of a
    ``height`` x ``width`` image whose only True pixels are those of ``crop`` [h, w] at column ``x``, row
    ``y``. Each crop column padded with a False cell above and below makes every run start and end inside
    its column; a run that ends on the image's last row and one that starts on the next column's first
    row are one run of the image, so such a pair of edges is dropped."""
    rows, cols = crop.shape
    padded = np.zeros((cols, rows + 2), dtype=np.int8)
    padded[:, 1:-1] = crop.T
    changes = np.flatnonzero(np.diff(padded.ravel())) + 1  # where a run starts or ends, in padded cells
    column, row = np.divmod(changes, rows + 2)
    edges = (x + column) * height + (y - 1) + row  # alternately a run's first pixel and the pixel after it
    joined = np.flatnonzero(edges[1:-1:2] == edges[2::2])
    if len(joined):
        edges = np.delete(edges, np.concatenate((2 * joined + 1, 2 * joined + 2)))
    runs = np.diff(edges, prepend=0, append=height * width)
    # pycocotools ends on the last run of pixels: no empty False run after a mask that fills the last pixel.
    return runs[:-1] if len(runs) > 1 and runs[-1] == 0 else runs


@dataclass
class Detections:
    """The detections of one image (N of them, image height x width), best score first.

    boxes [N, 4] int64 pixel x1y1x2y2, scores [N] float32 box scores, class_ids [N] int64, class_names [N]
    str, mask_scores [N] float32 (what ranks the masks: YOLACT++'s box score x predicted mask IoU, otherwise
    the box score), track_ids [N] int64 or None when not tracked.

    Each mask is stored as its crop: ``mask_crops[i]`` bool [h_i, w_i] at ``mask_offsets[i]`` = (x, y)
    (int64 [N, 2]), the region its prototype cells can reach; the image is False outside it. ``masks``
    gives the dense [N, height, width] planes (made on first use), ``mask(i)`` one plane, ``crop(i)`` one
    crop with its offset.
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    class_names: list[str]
    mask_crops: list[np.ndarray]
    mask_offsets: np.ndarray
    mask_scores: np.ndarray
    height: int
    width: int
    track_ids: np.ndarray | None = None
    _masks: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)
    _rles: list[dict] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.track_ids is not None:
            self.track_ids = np.asarray(self.track_ids, dtype=np.int64)
            if self.track_ids.shape != (len(self),):
                raise ValueError(f"track_ids: expected [{len(self)}] ids, got shape {list(self.track_ids.shape)}")

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, index: int | slice | Sequence[int] | np.ndarray) -> Detections:
        """The detections picked by ``index`` (an int array, a bool mask [N], a slice or an int), in its
        order, every field aligned: boxes, scores, classes, names, mask scores, crops and track ids."""
        picked = np.atleast_1d(np.arange(len(self))[index])
        subset = Detections(
            boxes=self.boxes[picked],
            scores=self.scores[picked],
            class_ids=self.class_ids[picked],
            class_names=[self.class_names[i] for i in picked],
            mask_crops=[self.mask_crops[i] for i in picked],
            mask_offsets=self.mask_offsets[picked],
            mask_scores=self.mask_scores[picked],
            height=self.height,
            width=self.width,
            track_ids=None if self.track_ids is None else self.track_ids[picked],
        )
        if self._rles is not None:
            subset._rles = [self._rles[i] for i in picked]
        return subset

    def crop(self, i: int) -> MaskCrop:
        x, y = (int(v) for v in self.mask_offsets[i])
        return MaskCrop(self.mask_crops[i], (x, y))

    def mask(self, i: int) -> np.ndarray:
        """Mask ``i`` as a bool [height, width] plane (made now; the crop is what is stored)."""
        plane = np.zeros((self.height, self.width), dtype=bool)
        crop = self.crop(i)
        plane[crop.region] = crop.mask
        return plane

    @property
    def masks(self) -> np.ndarray:
        """All masks as bool [N, height, width], made on first use and kept: N full planes, where the crops
        take a small part of that (see ``mask_nbytes``)."""
        if self._masks is None:
            masks = np.zeros((len(self), self.height, self.width), dtype=bool)
            for i, plane in enumerate(masks):
                crop = self.crop(i)
                plane[crop.region] = crop.mask
            self._masks = masks
        return self._masks

    @property
    def mask_nbytes(self) -> int:
        """Bytes the stored masks take: the crops and their offsets."""
        return sum(crop.nbytes for crop in self.mask_crops) + self.mask_offsets.nbytes

    def mask_areas(self) -> np.ndarray:
        """int64 [N]: the True pixels of each mask."""
        return np.array([np.count_nonzero(crop) for crop in self.mask_crops], dtype=np.int64)

    def rle(self) -> list[dict[str, Any]]:
        """The masks as COCO RLE dicts (pycocotools: ``size`` [h, w], ``counts`` bytes), encoded once, from
        the crops: their runs over the image, compressed by pycocotools. Equal to pycocotools' ``encode`` of
        the dense masks."""
        if self._rles is None:
            size = [self.height, self.width]
            runs = [{"size": size, "counts": frame_runs(crop, *offset, self.height, self.width)}
                    for crop, offset in zip(self.mask_crops, self.mask_offsets.tolist())]
            self._rles = mask_utils.frPyObjects(runs, self.height, self.width) if runs else []
        return self._rles

    def to_json(self, image_name: str) -> dict[str, Any]:
        """The per-image JSON record, the format ``python -m yolact.predict`` and the C++ runtime write, each
        detection with its ``track_id`` (null when not tracked)."""
        rles = self.rle()
        areas = self.mask_areas()
        records = [
            {
                "track_id": None if self.track_ids is None else int(self.track_ids[i]),
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

    def to_supervision(self) -> Any:
        """These detections as a ``supervision.Detections``: xyxy float, confidence (box scores), class_id,
        tracker_id (None when not tracked), mask as supervision's ``CompactMask`` made from the crops (dense
        bool [N, height, width] on a supervision without it), and ``data`` with ``class_name`` (str [N]) and
        ``mask_score`` (float32 [N]). supervision is an optional dependency (the ``video`` extra)."""
        try:
            import supervision as sv
        except ImportError:
            raise ImportError(f"Detections.to_supervision needs supervision: {SUPERVISION_INSTALL}") from None
        return sv.Detections(
            xyxy=self.boxes.astype(np.float32),
            mask=self.compact_mask(sv.CompactMask) if hasattr(sv, "CompactMask") else self.masks,
            confidence=self.scores,
            class_id=self.class_ids,
            tracker_id=self.track_ids,
            data={"class_name": np.array(self.class_names, dtype=str), "mask_score": self.mask_scores},
        )

    def compact_mask(self, compact_mask_type: type) -> Any:
        """supervision's ``CompactMask`` of the crops: each crop's column-major runs (a crop with no pixel
        becomes supervision's own stand-in, a 1x1 False crop)."""
        crops = [crop if crop.size else np.zeros((1, 1), dtype=bool) for crop in self.mask_crops]
        offsets = np.array([offset if crop.size else (0, 0) for crop, offset in zip(self.mask_crops, self.mask_offsets.tolist())],
                           dtype=np.int32).reshape(-1, 2)
        runs = [frame_runs(crop, 0, 0, *crop.shape).astype(np.int32) for crop in crops]
        shapes = np.array([crop.shape for crop in crops], dtype=np.int32).reshape(-1, 2)
        return compact_mask_type(runs, shapes, offsets, (self.height, self.width))


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


def paste_masks(cells: np.ndarray, rows: AxisTaps, cols: AxisTaps) -> tuple[list[np.ndarray], np.ndarray]:
    """Each of ``cells`` [N, Hp, Wp] (float32) upsampled and binarised over the pixels its non-zero cells
    reach: (crops, offsets), crop n bool [h_n, w_n] at offsets[n] = (x, y) (int64 [N, 2]); the image is
    False outside it. A mask whose cells reach no pixel gets an empty crop at (0, 0).

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
    crops = [EMPTY_CROP] * len(cells)
    offsets = np.zeros((len(cells), 2), dtype=np.int64)
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
        crops[n] = upsampled > MASK_THRESHOLD
        offsets[n] = xs.start, ys.start
    return crops, offsets


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
    prototypes = raw.masks[index]
    rows = axis_taps(prototypes.shape[-2], height)
    cols = axis_taps(prototypes.shape[-1], width)
    crops, offsets = paste_masks(prototypes[keep], rows, cols)
    return Detections(
        boxes=pixel_boxes(raw.boxes[index, keep], height, width),
        scores=raw.scores[index, keep].astype(np.float32),
        mask_scores=raw.mask_scores[index, keep].astype(np.float32),
        class_ids=class_ids,
        class_names=[class_names[c] if class_names is not None else str(c) for c in class_ids],
        mask_crops=crops,
        mask_offsets=offsets,
        height=height,
        width=width,
    )
