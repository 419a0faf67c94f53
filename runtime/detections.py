"""The final-image step without torch: from the graph's padded outputs to per-image detections with pixel
boxes and boolean masks at the image size.

It gives the numbers of ``yolact.to_image`` (PyTorch's bilinear upsampling with ``align_corners=False``,
then ``> 0.5``; boxes scaled, ordered, clamped and truncated like ``sanitize_coordinates``) but upsamples
a mask only where it can be non-zero: the support of its cropped prototype cells grown by the one cell that
bilinear taps reach, mapped to image pixels. It does so in numpy, in PyTorch's order of float32 operations,
copying whole cell rows of pixels whose four taps lie on one side of 0.5 and computing only the bytes where a
mask's edge can fall, for all masks at once (``paste_masks``). That region is what a mask
keeps: its crop, 8 pixels to a byte, with the crop's place in the image. No full-image plane is made unless
a caller asks for one (``Detections.masks``, ``Detections.mask``), and COCO RLE is computed from the crops."""

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
SUPERVISION_INSTALL = 'pip install ".[video]"'
# A pixel whose four bilinear taps all lie above 0.5 + SURE_MARGIN (all below 0.5 - SURE_MARGIN) is above
# (below) 0.5 whatever float32 rounding does: it is interpolated twice (along the width, then the height),
# each time with two weights that sum to 1 within 2^-25 and two products and a sum each rounded by at most
# 2^-24 relative, so it stays within 6 x 2^-24 relative (under 2e-7 at 0.5) of its taps' range.
SURE_MARGIN = 1e-6
# Masks are pasted in groups of about this many cell rows x image columns (a group's largest buffers), each
# group in buffers of its own, so that a large image's transient memory stays a small part of its dense masks.
GROUP_PIXELS = 1 << 22
# The most float32 values of one step of the mixed bytes' arithmetic (8 MiB an array).
MIXED_VALUES = 1 << 21
# A byte's 8 pixels, first in the high bit, as np.packbits.
BIT_VALUES = np.array([128, 64, 32, 16, 8, 4, 2, 1], dtype=np.uint8)
EMPTY_PACKED = np.zeros((0, 0), dtype=np.uint8)
EMPTY_PACKED.flags.writeable = False


class RawOutputs(GraphOutputs):
    """The graph's outputs (fields: :class:`contract.GraphOutputs`) as numpy arrays: num_dets [B] int32,
    boxes [B, K, 4] float32 normalised x1y1x2y2, scores [B, K] float32, classes [B, K] int32 (-1 in padding),
    masks [B, K, Hp, Wp] float32 cropped mask probabilities, mask_scores [B, K] float32."""

    __slots__ = ()


class MaskCrop(NamedTuple):
    """One mask as a crop: ``mask`` bool [h, w], the image's rows y..y+h-1 and columns x..x+w-1 (``offset``
    = (x, y)); every pixel outside it is False. h and w are 0 for a mask with no pixel there."""

    mask: np.ndarray
    offset: tuple[int, int]

    @property
    def region(self) -> tuple[slice, slice]:
        """(rows, columns) of the image the crop covers: ``plane[crop.region] = crop.mask``."""
        x, y = self.offset
        return slice(y, y + self.mask.shape[0]), slice(x, x + self.mask.shape[1])


def pack_crops(crops: Sequence[np.ndarray], offsets: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Bool crops [h_i, w_i] at offsets (x, y) [N, 2] -> (packed: uint8 [h_i, ceil(w_i / 8)], each row's
    pixels 8 to a byte, first pixel in the high bit (``np.packbits``); regions: int64 [N, 4] x0, y0, x1, y1)."""
    packed = [np.packbits(crop, axis=1) for crop in crops]
    sizes = np.array([crop.shape[::-1] for crop in crops], dtype=np.int64).reshape(-1, 2)
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    return packed, np.concatenate((offsets, offsets + sizes), axis=1)


def stable_order(values: np.ndarray) -> np.ndarray:
    """Indices that sort ``values`` (non-negative ints), equal ones in their order: as the smallest unsigned
    type that holds them, since NumPy radix-sorts 8- and 16-bit integers (a crop's columns, a frame's crops)."""
    return np.argsort(values.astype(np.min_scalar_type(values.max(initial=0))), kind="stable")


def column_runs(
    packed: Sequence[np.ndarray], regions: np.ndarray, frame_height: np.ndarray | int, frame_area: np.ndarray | int
) -> list[np.ndarray]:
    """Uncompressed COCO RLE counts (int64: column-major run lengths, the first one of False pixels) of each
    packed crop (``pack_crops``) in a frame (of ``frame_height`` rows and ``frame_area`` pixels, each one
    value or one per crop) that is False outside it, all crops at once.

    A crop's runs start and end inside its columns: where a pixel differs from the one above it (a set bit
    of two rows' XOR), or is True on the crop's first row (a start) or last row (an end, at the pixel below).
    Sorted column-major they alternate start, end. A run that ends on the frame's last row and one that
    starts on the next column's first row are one run of the frame, so such a pair of edges is dropped."""
    count = len(packed)
    frame_height = np.broadcast_to(np.asarray(frame_height, dtype=np.int64), (count,))
    frame_area = np.broadcast_to(np.asarray(frame_area, dtype=np.int64), (count,))
    shapes = np.array([rows.shape for rows in packed], dtype=np.int64).reshape(count, 2)
    row_bytes = shapes[:, 1]
    starts = np.concatenate(([0], np.cumsum((shapes[:, 0] + 1) * row_bytes)))
    flips = np.zeros(starts[-1], dtype=np.uint8)
    for rows, start in zip(packed, starts.tolist()):
        if rows.size:
            # Row i of the plane: crop rows i and i - 1 XORed, a missing row being all False.
            plane = flips[start : start + rows.size + rows.shape[1]].reshape(-1, rows.shape[1])
            plane[:-1] = rows
            plane[1:] ^= rows
    byte_position = np.flatnonzero(flips != 0)  # NumPy finds non-zero bools far faster than non-zero bytes
    byte_index, bit = np.divmod(np.flatnonzero(np.unpackbits(flips[byte_position])), 8)
    position = byte_position[byte_index]
    owner = np.searchsorted(starts, position, side="right") - 1
    row, byte_column = np.divmod(position - starts[owner], row_bytes[owner])
    column = byte_column * 8 + bit
    # Found crop by crop, row by row: column-major within each crop once sorted by column, then by crop.
    order = stable_order(column)
    order = order[stable_order(owner[order])]
    owner = owner[order]
    edges = (column[order] + regions[owner, 0]) * frame_height[owner] + row[order] + regions[owner, 1]
    joined = np.flatnonzero((edges[1:-1:2] == edges[2::2]) & (owner[1:-1:2] == owner[2::2]))
    if len(joined):
        dropped = np.concatenate((2 * joined + 1, 2 * joined + 2))
        edges, owner = np.delete(edges, dropped), np.delete(owner, dropped)
    # Each crop's edges between a 0 and its frame's area: differences are its runs.
    edge_counts = np.bincount(owner, minlength=count)
    ends = np.cumsum(edge_counts + 2)
    firsts = ends - edge_counts - 2
    bounded = np.empty(ends[-1] if count else 0, dtype=np.int64)
    inner = np.ones(len(bounded), dtype=bool)
    inner[firsts] = inner[ends - 1] = False
    bounded[firsts], bounded[ends - 1], bounded[inner] = 0, frame_area, edges
    runs = np.diff(bounded)
    # pycocotools ends on the last run of pixels: no empty False run after a mask that fills the last pixel.
    stops = ends - 1 - ((runs[ends - 2] == 0) & (edge_counts > 0)) if count else ends
    return [runs[first:stop] for first, stop in zip(firsts.tolist(), stops.tolist())]


@dataclass
class Detections:
    """The detections of one image (N of them, image height x width), best score first.

    boxes [N, 4] int64 pixel x1y1x2y2, scores [N] float32 box scores, class_ids [N] int64, class_names [N]
    str, mask_scores [N] float32 (what ranks the masks: YOLACT++'s box score x predicted mask IoU, otherwise
    the box score), track_ids [N] int64 or None when not tracked.

    Each mask is stored as its crop, the region its prototype cells can reach (the image is False outside
    it): ``mask_regions`` int64 [N, 4] x0, y0, x1, y1 (pixels, end exclusive) and ``packed_masks[i]`` uint8
    [y1 - y0, ceil((x1 - x0) / 8)], the crop's rows 8 pixels to a byte (``np.packbits``). ``crop(i)`` gives
    one crop as bool with its offset, ``mask(i)`` one image plane, ``masks`` the dense [N, height, width]
    planes (made on first use, kept).
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    class_names: list[str]
    packed_masks: list[np.ndarray]
    mask_regions: np.ndarray
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
        order, every field aligned: boxes, scores, classes, names, mask scores, masks and track ids."""
        picked = np.atleast_1d(np.arange(len(self))[index])
        subset = Detections(
            boxes=self.boxes[picked],
            scores=self.scores[picked],
            class_ids=self.class_ids[picked],
            class_names=[self.class_names[i] for i in picked],
            packed_masks=[self.packed_masks[i] for i in picked],
            mask_regions=self.mask_regions[picked],
            mask_scores=self.mask_scores[picked],
            height=self.height,
            width=self.width,
            track_ids=None if self.track_ids is None else self.track_ids[picked],
        )
        if self._rles is not None:
            subset._rles = [self._rles[i] for i in picked]
        return subset

    @property
    def mask_offsets(self) -> np.ndarray:
        """int64 [N, 2]: each crop's (x, y) in the image."""
        return self.mask_regions[:, :2]

    def crop(self, i: int) -> MaskCrop:
        """Mask ``i`` as its bool crop and the crop's (x, y) offset in the image."""
        x0, y0, x1, _ = (int(v) for v in self.mask_regions[i])
        return MaskCrop(np.unpackbits(self.packed_masks[i], axis=1, count=x1 - x0).view(bool), (x0, y0))

    def mask(self, i: int) -> np.ndarray:
        """Mask ``i`` as a bool [height, width] plane (made now; the crop is what is stored)."""
        plane = np.zeros((self.height, self.width), dtype=bool)
        crop = self.crop(i)
        plane[crop.region] = crop.mask
        return plane

    @property
    def masks(self) -> np.ndarray:
        """All masks as bool [N, height, width], made on first use and kept: N full planes, where the stored
        crops take a small part of that (``mask_nbytes``)."""
        if self._masks is None:
            masks = np.zeros((len(self), self.height, self.width), dtype=bool)
            for i, plane in enumerate(masks):
                crop = self.crop(i)
                plane[crop.region] = crop.mask
            self._masks = masks
        return self._masks

    @property
    def mask_nbytes(self) -> int:
        """Bytes the stored masks take: the packed crops and their regions."""
        return sum(rows.nbytes for rows in self.packed_masks) + self.mask_regions.nbytes

    def rle(self) -> list[dict[str, Any]]:
        """The masks as COCO RLE dicts (pycocotools: ``size`` [h, w], ``counts`` bytes), encoded once, from
        the crops: their runs over the image, compressed by pycocotools. Equal to pycocotools' ``encode`` of
        the dense masks."""
        if self._rles is None:
            size = [self.height, self.width]
            runs = column_runs(self.packed_masks, self.mask_regions, self.height, self.height * self.width)
            self._rles = mask_utils.frPyObjects([{"size": size, "counts": counts} for counts in runs], *size) if runs else []
        return self._rles

    def to_json(self, image_name: str) -> dict[str, Any]:
        """The per-image JSON record, the format ``python -m yolact.predict`` and the C++ runtime write, each
        detection with its ``track_id`` (null when not tracked)."""
        rles = self.rle()
        areas = mask_utils.area(rles) if rles else []
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
        becomes supervision's own stand-in, a 1x1 False crop at (0, 0))."""
        empty = (self.mask_regions[:, 2] == self.mask_regions[:, 0]) | (self.mask_regions[:, 3] == self.mask_regions[:, 1])
        packed = [np.zeros((1, 1), np.uint8) if none else rows for rows, none in zip(self.packed_masks, empty.tolist())]
        offsets = np.where(empty[:, None], 0, self.mask_offsets)
        sizes = np.where(empty[:, None], 1, self.mask_regions[:, 2:] - self.mask_offsets)  # (w, h)
        runs = column_runs(packed, np.concatenate((np.zeros_like(sizes), sizes), axis=1), sizes[:, 1], sizes.prod(axis=1))
        return compact_mask_type(
            [counts.astype(np.int32) for counts in runs],
            sizes[:, ::-1].astype(np.int32),
            offsets.astype(np.int32),
            (self.height, self.width),
        )


class AxisTaps(NamedTuple):
    """Bilinear taps along one axis from ``source`` cells to ``output`` pixels, as PyTorch computes them
    (float32, half-pixel centres, source position clamped at 0, upper tap clamped to the last cell): pixel i
    is low_weight[i] * cell low[i] + high_weight[i] * cell high[i]. low and high never decrease; the pixels
    whose low tap is cell c are first_pixel[c] .. first_pixel[c + 1] - 1."""

    low: np.ndarray
    high: np.ndarray
    low_weight: np.ndarray
    high_weight: np.ndarray
    first_pixel: np.ndarray

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
    first_pixel = np.searchsorted(low, np.arange(source + 1))
    return AxisTaps(low, np.minimum(low + 1, source - 1), np.float32(1) - high_weight, high_weight, first_pixel)


class MaskRegions(NamedTuple):
    """Where K masks are pasted, each an int64 array: pixel rows y0..y1-1 and columns x0..x1-1 [K], the cell
    rows they tap, band_first..band_first + band_rows - 1 [K], and [K + 1] offsets (the last one the total):
    band_start, of each mask's cell rows among the group's, and byte_start, of its packed crop in the group's
    buffer."""

    y0: np.ndarray
    y1: np.ndarray
    x0: np.ndarray
    x1: np.ndarray
    band_first: np.ndarray
    band_rows: np.ndarray
    band_start: np.ndarray
    byte_start: np.ndarray

    @classmethod
    def laid_out(
        cls, y0: np.ndarray, y1: np.ndarray, x0: np.ndarray, x1: np.ndarray, band_first: np.ndarray, band_rows: np.ndarray
    ) -> MaskRegions:
        crop_bytes = (y1 - y0) * ((x1 - x0 + 7) // 8)
        return cls(
            y0, y1, x0, x1, band_first, band_rows, np.concatenate(([0], np.cumsum(band_rows))), np.concatenate(([0], np.cumsum(crop_bytes)))
        )

    def part(self, masks: slice) -> MaskRegions:
        """The regions of ``masks``, laid out in buffers of their own."""
        return MaskRegions.laid_out(*(values[masks] for values in self[:6]))

    @property
    def widths(self) -> np.ndarray:
        return self.x1 - self.x0

    @property
    def row_bytes(self) -> np.ndarray:
        return (self.x1 - self.x0 + 7) // 8


def mask_regions(cells: np.ndarray, rows: AxisTaps, cols: AxisTaps) -> tuple[np.ndarray, MaskRegions]:
    """(indices of the masks of ``cells`` [N, Hp, Wp] whose non-zero cells reach a pixel, their regions)."""
    # Each mask's support (x, y, width, height in cells; width 0 when it has none).
    supports = np.array([cv2.boundingRect(nonzero) for nonzero in (cells != 0).view(np.uint8)], dtype=np.int64)
    first_col, first_row, support_cols, support_rows = supports.reshape(-1, 4).T
    y0, y1 = rows.pixels_reaching(first_row, first_row + support_rows - 1)
    x0, x1 = cols.pixels_reaching(first_col, first_col + support_cols - 1)
    # Downsampling to a tiny image can step over a support.
    reached = np.flatnonzero((support_cols > 0) & (y1 > y0) & (x1 > x0))
    y0, y1, x0, x1 = y0[reached], y1[reached], x0[reached], x1[reached]
    band_first = rows.low[y0]
    return reached, MaskRegions.laid_out(y0, y1, x0, x1, band_first, rows.high[y1 - 1] - band_first + 1)


def paste_masks(cells: np.ndarray, rows: AxisTaps, cols: AxisTaps) -> tuple[list[np.ndarray], np.ndarray]:
    """Each of ``cells`` [N, Hp, Wp] (float32) upsampled and binarised over the pixels its non-zero cells
    reach: (packed crops, regions), as ``pack_crops`` gives them; the image is False outside a crop. A mask
    whose cells reach no pixel gets an empty crop at (0, 0).

    The pixels are PyTorch's bilinear interpolation in its order of float32 operations (along the width,
    then along the height), so the masks equal ``yolact.to_image``'s (OpenCV's warpAffine, tried first,
    flipped 0.08% of the pixels with its fixed-point coordinates). Consecutive masks are pasted in groups of
    about GROUP_PIXELS cell rows x image columns, the size of a group's largest buffer."""
    reached, regions = mask_regions(cells, rows, cols)
    crops = [EMPTY_PACKED] * len(cells)
    group = regions.band_start[:-1] * len(cols.low) // GROUP_PIXELS
    bounds = np.append(np.flatnonzero(np.diff(group, prepend=-1)), len(reached)).tolist()
    for start, stop in zip(bounds, bounds[1:]):
        for n, packed in zip(
            reached[start:stop].tolist(), paste_group(cells, reached[start:stop], regions.part(slice(start, stop)), rows, cols)
        ):
            crops[n] = packed
    offsets = np.zeros((len(cells), 2), dtype=np.int64)
    offsets[reached] = np.stack((regions.x0, regions.y0), axis=1)
    sizes = np.zeros((len(cells), 2), dtype=np.int64)
    sizes[reached] = np.stack((regions.widths, regions.y1 - regions.y0), axis=1)
    return crops, np.concatenate((offsets, offsets + sizes), axis=1)


def paste_group(cells: np.ndarray, masks: np.ndarray, regions: MaskRegions, rows: AxisTaps, cols: AxisTaps) -> list[np.ndarray]:
    """Packed crops (as ``pack_crops``: uint8 [h, ceil(w / 8)], views of one buffer) of ``cells[masks]``
    over ``regions``.

    A pixel's four taps are the cells (a, c), (a, c + 1), (a + 1, c), (a + 1, c + 1) (a, c: its low taps;
    the high ones clamped to the last row and column), and every pixel with the same low taps shares them.
    Where all four are above 0.5 + SURE_MARGIN (all below 0.5 - SURE_MARGIN) the pixels are True (False)
    whatever the float32 rounding: those are copied, cell row by cell row, packed once per cell row. Only the
    bytes that hold a pixel whose taps lie on both sides are computed, for all the group's masks at once."""
    band = band_cells(cells, masks, regions)
    all_above, all_below = one_sided_taps(band, regions.band_start[1:] - 1)
    # The pixel columns x_lo..x_hi - 1 of every band row, True where the pixel is certainly True.
    x_lo, x_hi = int(regions.x0.min()), int(regions.x1.max())
    certain = cv2.transpose(cv2.transpose(all_above.view(np.uint8))[cols.low[x_lo:x_hi]])  # [band rows, x_hi - x_lo]
    # Each pixel row's low tap, counted from its mask's first band row.
    heights = regions.y1 - regions.y0
    pixel_rows = np.arange(heights.sum()) + np.repeat(regions.y0 - (np.cumsum(heights) - heights), heights)
    band_row = rows.low[pixel_rows] - np.repeat(regions.band_first, heights)
    buffer = np.empty(regions.byte_start[-1] + 1, dtype=np.uint8)  # the last byte takes writes to no pixel
    crops = []
    row = 0
    for y0, y1, x0, x1, band_start, band_stop, byte_start, byte_stop in zip(
        *(values.tolist() for values in (regions.y0, regions.y1, regions.x0 - x_lo, regions.x1 - x_lo)),
        regions.band_start[:-1].tolist(),
        regions.band_start[1:].tolist(),
        regions.byte_start[:-1].tolist(),
        regions.byte_start[1:].tolist(),
    ):
        crop = buffer[byte_start:byte_stop].reshape(y1 - y0, -1)
        np.take(np.packbits(certain[band_start:band_stop, x0:x1], axis=1), band_row[row : row + y1 - y0], axis=0, out=crop)
        crops.append(crop)
        row += y1 - y0
    write_mixed_bytes(buffer, band, ~(all_above | all_below), regions, rows, cols)
    return crops


def band_cells(cells: np.ndarray, masks: np.ndarray, regions: MaskRegions) -> np.ndarray:
    """[band rows, Wp] float32: the cell rows each of ``cells[masks]`` taps, mask after mask (``band_start``)."""
    hp, wp = cells.shape[1:]
    first_cell_row = masks * hp + regions.band_first
    cell_rows = np.arange(regions.band_start[-1]) + np.repeat(first_cell_row - regions.band_start[:-1], regions.band_rows)
    return cells.reshape(-1, wp)[cell_rows]


def one_sided_taps(band: np.ndarray, band_ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bool [band rows, Wp] twice: whether the four taps of the pixels whose low taps are a band's cell row
    and column are all above 0.5 + SURE_MARGIN, and whether they are all below 0.5 - SURE_MARGIN. A band's
    last row (``band_ends``) and the last column pair with themselves: they are someone's low taps only when
    the high taps are clamped onto them."""
    all_above = band > np.float32(MASK_THRESHOLD + SURE_MARGIN)
    all_below = band < np.float32(MASK_THRESHOLD - SURE_MARGIN)
    for one_sided in (all_above, all_below):
        one_sided[:, :-1] &= one_sided[:, 1:]
        last_rows = one_sided[band_ends]
        one_sided[:-1] &= one_sided[1:]
        one_sided[band_ends] = last_rows
    return all_above, all_below


def write_mixed_bytes(
    buffer: np.ndarray, band: np.ndarray, mixed: np.ndarray, regions: MaskRegions, rows: AxisTaps, cols: AxisTaps
) -> None:
    """Compute and write into ``buffer`` (the group's packed crops, laid out by ``regions``) every crop byte
    holding a pixel whose low taps are ``mixed`` [band rows, Wp] (taps on both sides of 0.5): its 8 pixels,
    in PyTorch's order of float32 operations, from ``band``'s cells."""
    band_row, cell_col = np.divmod(np.flatnonzero(mixed), band.shape[1])
    mask = np.searchsorted(regions.band_start, band_row, side="right") - 1
    cell_row = band_row - regions.band_start[mask] + regions.band_first[mask]
    # The pixels of the crop with those low taps: rows y_first.. (y_count), columns x_first..x_stop - 1.
    y_first = np.maximum(rows.first_pixel[cell_row], regions.y0[mask])
    y_count = np.minimum(rows.first_pixel[cell_row + 1], regions.y1[mask]) - y_first
    x_first = np.maximum(cols.first_pixel[cell_col], regions.x0[mask]) - regions.x0[mask]
    x_stop = np.minimum(cols.first_pixel[cell_col + 1], regions.x1[mask]) - regions.x0[mask]
    squares = np.flatnonzero((y_count > 0) & (x_stop > x_first))
    if not len(squares):
        return
    # The crop bytes (8 columns each) they touch, once: squares of a band row come in column order.
    first_byte = x_first[squares] // 8
    square, byte = expand_ranges(first_byte, (x_stop[squares] - 1) // 8 - first_byte + 1)
    square = squares[square]
    new = np.ones(len(square), dtype=bool)
    new[1:] = (byte[1:] != byte[:-1]) | (band_row[square[1:]] != band_row[square[:-1]])
    square, byte = square[new], byte[new]
    # The bytes go in parts: the arrays below are [pixel rows per cell row, 8, bytes] float32, and coarse
    # prototypes (yolact_tiny's 32x32 at 4K) make both tall (67 rows) and many (160 MiB at once, measured).
    part_bytes = max(1, MIXED_VALUES // (8 * int(y_count[square].max())))
    for start in range(0, len(square), part_bytes):
        part = square[start : start + part_bytes]
        write_bytes(
            buffer,
            band,
            byte[start : start + part_bytes],
            band_row[part],
            mask[part],
            cell_row[part],
            y_first[part],
            y_count[part],
            regions,
            rows,
            cols,
        )


def write_bytes(
    buffer: np.ndarray,
    band: np.ndarray,
    byte: np.ndarray,
    band_row: np.ndarray,
    mask: np.ndarray,
    cell_row: np.ndarray,
    y_first: np.ndarray,
    y_count: np.ndarray,
    regions: MaskRegions,
    rows: AxisTaps,
    cols: AxisTaps,
) -> None:
    """Byte columns ``byte`` [B] of the crops of ``mask`` [B], over the ``y_count`` pixel rows from
    ``y_first`` that take their low taps from ``band_row`` (the image's cell row ``cell_row``): computed in
    PyTorch's order of float32 operations and written into ``buffer``."""
    # Along the width, at the byte's 8 columns [8, B], on the cell row and the next (clamped). Columns past
    # the image are read at its last one; the byte's bits past the crop are cleared at the end. (The bytes
    # are the last axis: NumPy runs a loop over 8 values, per byte, far slower than one over all bytes.)
    x = np.minimum(regions.x0[mask] + 8 * byte + np.arange(8)[:, None], len(cols.low) - 1)
    low, high, low_weight, high_weight = cols.low[x], cols.high[x], cols.low_weight[x], cols.high_weight[x]
    cells = band.ravel()
    upper_row = band_row * band.shape[1]
    lower_row = upper_row + band.shape[1] * (cell_row < len(rows.first_pixel) - 2)
    upper = cells[upper_row + low] * low_weight
    upper += cells[upper_row + high] * high_weight
    lower = cells[lower_row + low] * low_weight
    lower += cells[lower_row + high] * high_weight
    # Along the height, at the pixel rows of those low taps [steps, 8, B]; rows past y_count write nowhere.
    step = np.arange(int(y_count.max()))[:, None]
    y = np.minimum(y_first + step, len(rows.low) - 1)
    value = upper * rows.low_weight[y][:, None, :]
    value += lower * rows.high_weight[y][:, None, :]
    # Each byte's 8 pixels, first in the high bit (as np.packbits) [steps, B].
    bits = (value > MASK_THRESHOLD).view(np.uint8)
    bits *= BIT_VALUES[:, None]
    packed = bits.sum(axis=1, dtype=np.uint8)
    packed &= (0xFF00 >> np.minimum(regions.widths[mask] - 8 * byte, 8)).astype(np.uint8)
    row_bytes = regions.row_bytes[mask]
    target = regions.byte_start[mask] - regions.y0[mask] * row_bytes + byte + y * row_bytes
    target[step >= y_count] = len(buffer) - 1
    buffer[target] = packed


def expand_ranges(starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(i, v) for every v in starts[i] .. starts[i] + counts[i] - 1, in order of i then v."""
    steps = max(int(counts.max(initial=0)), 1)
    item, step = np.divmod(np.flatnonzero(np.arange(steps) < counts[:, None]), steps)
    return item, starts[item] + step


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
    # The graph ranks its detections, so the kept ones are usually the first ones: no copy of their cells.
    cells = prototypes[: len(keep)] if np.array_equal(keep, np.arange(len(keep))) else prototypes[keep]
    packed, regions = paste_masks(cells, rows, cols)
    return Detections(
        boxes=pixel_boxes(raw.boxes[index, keep], height, width),
        scores=raw.scores[index, keep].astype(np.float32),
        mask_scores=raw.mask_scores[index, keep].astype(np.float32),
        class_ids=class_ids,
        class_names=[class_names[c] if class_names is not None else str(c) for c in class_ids],
        packed_masks=packed,
        mask_regions=regions,
        height=height,
        width=width,
    )
