"""Identities over time with supervision's ByteTrack (supervision 0.30.x: the last release that has it and
runs on numpy 1, see docs/streams.md). No tracker is written here: this module feeds the library and maps its
answer back onto our detections.

``sv.ByteTrack.update_with_detections`` answers with a filtered and reordered subset of what it was given
(the bug class of supervision #418, where masks went out of step with ids). Every detection we hand it
carries its own row number in ``data["row"]``, which supervision carries through its selections, so each
returned id is set on the row it belongs to: masks, scores and classes go with their id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import pycocotools.mask as mask_utils

from .detections import SUPERVISION_INSTALL, Detections
from .errors import ModelError

TRACKERS = ("bytetrack",)
ROW_KEY = "row"
NO_TRACK = -1  # the track id of a detection on no track


@dataclass(frozen=True)
class TrackerSettings:
    """How detections are fed to ByteTrack.

    feed_threshold: the lowest score handed to the tracker. ByteTrack's second association matches the
    tracks it lost in the first one against detections scoring between 0.1 and activation_threshold, so the
    runtime's usual 0.3 cut would starve it. activation_threshold: ByteTrack's ``track_activation_threshold``
    (first association; a new track needs 0.1 more). lost_track_buffer: frames (at 30 fps) a lost track waits
    to be found again, through an occlusion. matching_threshold: ByteTrack's ``minimum_matching_threshold``
    (the IoU cost a match may reach). mask_boxes: give the tracker each mask's tight box instead of the
    predicted box: under occlusion it follows what is visible. duplicate_iou: a detection whose mask
    overlaps a better-scoring one's by more than this IoU is not fed (None: all are): YOLACT suppresses
    duplicates class by class, so one shape can come out as a square and, lower, as a star, and the lower
    one would start a track of its own; masks tell such twins from shapes that merely overlap, where boxes
    may overlap as much. duplicate_box_iou: a detection whose box overlaps a better-scoring one's by more than this IoU,
    whatever the classes, is not fed either (cross-class suppression; None: off): it catches the twins the
    mask test misses, those whose mask disagrees with its box (a twin with an almost empty mask in a full-size
    box), and only boxes that nearly coincide, which distinct visible shapes seldom have.
    minimum_consecutive_frames: ByteTrack's own, the frames in a row a new track must be matched before it
    gets an id (as SORT's min_hits): a false detection that flickers for a frame or two starts no track.
    """

    feed_threshold: float = 0.1
    activation_threshold: float = 0.3
    lost_track_buffer: int = 60
    matching_threshold: float = 0.8
    mask_boxes: bool = False
    duplicate_iou: float | None = 0.6
    duplicate_box_iou: float | None = 0.7
    minimum_consecutive_frames: int = 5


# Chosen on the default-config trained model (yolact_small, 2500 iterations) among ByteTrack's defaults
# changed one principled step at a time, by IDF1 on ten videos of both scenarios (seeds 0-6, 10-12): fed
# from 0.1 without mask twins, a 60-frame memory, a track starts at 0.4, then box twins out and 5 frames to
# confirm a track. The last two raised IDF1 on 8 of the 10 (mean 0.678 -> 0.715; the plain glue 0.536; one
# equal, one -0.003), most on the occluded ones, where duplicate and flickering detections had started tracks
# of their own; on videos left out of the choice (python -m benchmarks.tracking --extra-seeds 2, seeds 100
# and 101) they gained on three of four. The masks' boxes measured worse (a mask's extent jitters more from
# frame to frame than the predicted box), and so did one tracker per class (a shape's class flips between
# frames on nearly a quarter of its detections, which splits its track).
# On the 5000-iteration default model (python -m train) they gave IDF1 0.935 and 0.698 on the benchmark's two
# videos, against the glue's 0.728 and 0.553 (docs/streams.md).
DEFAULT_SETTINGS = TrackerSettings()


class ByteTracker:
    """supervision's ByteTrack over our detections, one video at a time (frames in order)."""

    def __init__(self, settings: TrackerSettings = DEFAULT_SETTINGS, frame_rate: float = 30.0):
        try:
            import warnings

            import supervision as sv
        except ImportError:
            raise ModelError(f"tracking needs supervision 0.30: {SUPERVISION_INSTALL}") from None
        if not hasattr(sv, "ByteTrack"):
            raise ModelError(f"supervision {sv.__version__} has no ByteTrack (removed in 0.31): install supervision<0.31")
        self.settings = settings
        self._sv = sv
        with warnings.catch_warnings():  # 0.30 announces the removal that is the reason we pin it
            warnings.simplefilter("ignore", FutureWarning)
            self._tracker = sv.ByteTrack(
                track_activation_threshold=settings.activation_threshold,
                lost_track_buffer=settings.lost_track_buffer,
                minimum_matching_threshold=settings.matching_threshold,
                frame_rate=frame_rate,
                minimum_consecutive_frames=settings.minimum_consecutive_frames,
            )

    def update(self, detections: Detections) -> Detections:
        """All ``detections`` of the next frame, in their order, with ``track_ids`` (int64 [N]): the id of
        the track ByteTrack kept each one on, NO_TRACK for the others (below feed_threshold, a twin, or on
        no track, also a track not yet confirmed). Callers show those above their score threshold: a low-score detection that only
        keeps a track alive through an occlusion stays out of sight, as in the image path."""
        fed = fed_rows(detections, self.settings)
        boxes = tracking_boxes(detections, fed, self.settings.mask_boxes)
        given = self._sv.Detections(
            xyxy=boxes.astype(np.float32).reshape(-1, 4),
            confidence=detections.scores[fed].astype(np.float32),
            class_id=detections.class_ids[fed],
            data={ROW_KEY: fed},
        )
        tracked = self._tracker.update_with_detections(given)
        ids = np.full(len(detections), NO_TRACK, dtype=np.int64)
        if len(tracked):
            ids[np.asarray(tracked.data[ROW_KEY], dtype=np.int64)] = tracked.tracker_id
        answer = detections[np.arange(len(detections))]  # a copy that keeps the encoded RLE
        answer.track_ids = ids
        return answer


def fed_rows(detections: Detections, settings: TrackerSettings) -> np.ndarray:
    """The rows of ``detections`` (in score order) a tracker is given: above ``feed_threshold``, without
    box twins and mask twins."""
    fed = np.flatnonzero(detections.scores > settings.feed_threshold) if len(detections) else np.zeros(0, np.int64)
    if settings.duplicate_box_iou is not None:
        fed = without_box_duplicates(detections, fed, settings.duplicate_box_iou)
    if settings.duplicate_iou is not None:
        fed = without_duplicates(detections, fed, settings.duplicate_iou)
    return fed


def without_duplicates(detections: Detections, rows: np.ndarray, iou_limit: float) -> np.ndarray:
    """``rows`` (in score order) less each one whose mask overlaps a kept better-scoring one's by more than
    ``iou_limit`` (mask IoU from the COCO RLEs, any classes)."""
    if len(rows) < 2:
        return rows
    rles = detections.rle()
    chosen = [rles[r] for r in rows]
    return rows[first_of_overlapping(np.asarray(mask_utils.iou(chosen, chosen, np.zeros(len(rows), dtype=np.uint8))), iou_limit)]


def without_box_duplicates(detections: Detections, rows: np.ndarray, iou_limit: float) -> np.ndarray:
    """``rows`` (in score order) less each one whose box overlaps a kept better-scoring one's by more than
    ``iou_limit`` (box IoU, any classes)."""
    if len(rows) < 2:
        return rows
    boxes = detections.boxes[rows].astype(np.float64).reshape(-1, 4)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    return rows[first_of_overlapping(np.asarray(mask_utils.iou(xywh, xywh, np.zeros(len(rows), dtype=np.uint8))), iou_limit)]


def first_of_overlapping(overlaps: np.ndarray, iou_limit: float) -> list[int]:
    """Greedy suppression over items in score order, given their pairwise IoU: the positions of those kept,
    each overlapping no better kept one by more than ``iou_limit``."""
    kept: list[int] = []
    for k in range(len(overlaps)):
        if not kept or overlaps[k, kept].max() <= iou_limit:
            kept.append(k)
    return kept


def tracking_boxes(detections: Detections, rows: np.ndarray, mask_boxes: bool) -> np.ndarray:
    """[len(rows), 4] x1y1x2y2 boxes for the tracker: each mask's tight box (exclusive right/bottom, as
    pixel boxes are), or the predicted box where asked or where the mask is empty."""
    boxes = detections.boxes[rows].astype(np.float64).reshape(-1, 4)
    if mask_boxes:
        for k, row in enumerate(rows):
            x, y, w, h = mask_bounding_rect(detections, int(row))
            if w and h:
                boxes[k] = (x, y, x + w, y + h)
    return boxes


def mask_bounding_rect(detections: Detections, i: int) -> tuple[int, int, int, int]:
    """(x, y, width, height) of mask ``i``'s set pixels, from its crop (0 width when empty)."""
    crop = detections.crop(i)
    if not crop.mask.size:
        return 0, 0, 0, 0
    x, y, w, h = cv2.boundingRect(crop.mask.view(np.uint8))
    return x + crop.offset[0], y + crop.offset[1], w, h


def make_tracker(name: str | None, settings: TrackerSettings = DEFAULT_SETTINGS, frame_rate: float = 30.0) -> Any:
    """The tracker named on the command line (None: none)."""
    if name is None:
        return None
    if name not in TRACKERS:
        raise ModelError(f"--track {name}: choose one of {', '.join(TRACKERS)}")
    return ByteTracker(settings, frame_rate)
