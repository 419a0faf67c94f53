"""Output files that are complete at every moment a reader can see them, even when a run stops early.

- ``<stem>.mp4``: written under a temporary name, finalised and renamed when the video ends or the run stops.
- ``<stem>.jsonl``: one JSON line per frame, each written whole by one unbuffered write.
- ``<stem>.mot.txt``: MOTChallenge rows ``frame,id,x,y,w,h,conf,-1,-1,-1`` (frames 1-based, id -1 when
  untracked), a frame's rows written whole by one unbuffered write.
- COCO results: a JSON array streamed to a temporary file and closed and renamed at the end, so memory does
  not grow with the number of frames.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any, BinaryIO

import cv2
import numpy as np

from .detections import Detections
from .overlay import draw_overlay
from .tracking import NO_TRACK


def temporary_beside(target: Path) -> Path:
    """A hidden name beside ``target`` that keeps its suffix (OpenCV's writers pick the format from it)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return target.with_name(f".{target.stem}.{uuid.uuid4().hex[:12]}.tmp{target.suffix}")


def line_file(path: Path) -> BinaryIO:
    """``path`` opened for whole-line writes: unbuffered, so each write() is one system call."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "wb", buffering=0)


def track_ids_of(detections: Detections) -> list[int | None]:
    """Each detection's track id, None when untracked or on no track (NO_TRACK)."""
    ids = detections.track_ids
    return [None] * len(detections) if ids is None else [int(v) if v != NO_TRACK else None for v in ids]


def frame_record(index: int, time_s: float, detections: Detections) -> dict[str, Any]:
    """One JSONL line: ``frame`` (0-based), ``time_s`` and each detection with its ``track_id`` (None when
    untracked), class, scores, pixel box and COCO RLE (``counts`` as a string)."""
    rles = detections.rle()
    ids = track_ids_of(detections)
    return {
        "frame": index,
        "time_s": round(time_s, 6),
        "height": detections.height,
        "width": detections.width,
        "detections": [
            {
                "track_id": ids[i],
                "class_id": int(detections.class_ids[i]),
                "class_name": detections.class_names[i],
                "score": round(float(detections.scores[i]), 6),
                "mask_score": round(float(detections.mask_scores[i]), 6),
                "box_xyxy": [int(v) for v in detections.boxes[i]],
                "rle": {"size": [int(v) for v in rles[i]["size"]], "counts": _text(rles[i]["counts"])},
            }
            for i in range(len(detections))
        ],
    }


def _text(counts: bytes | str) -> str:
    return counts.decode("ascii") if isinstance(counts, bytes) else counts


def mot_rows(index: int, detections: Detections) -> str:
    """MOTChallenge rows of frame ``index`` (0-based; written 1-based): ``frame,id,x,y,w,h,conf,-1,-1,-1``;
    untracked detections with id -1, and when tracking only those on a track."""
    rows = []
    tracking = detections.track_ids is not None
    for track_id, box, score in zip(track_ids_of(detections), detections.boxes, detections.scores):
        if tracking and track_id is None:
            continue
        x1, y1, x2, y2 = (int(v) for v in box)
        rows.append(f"{index + 1},{-1 if track_id is None else track_id},{x1},{y1},{x2 - x1},{y2 - y1},{float(score):.6f},-1,-1,-1\n")
    return "".join(rows)


def tracked_overlay(image: np.ndarray, detections: Detections) -> np.ndarray:
    """The overlay, labelled ``#id class score`` when tracked; a track keeps its colour from frame to frame."""
    if detections.track_ids is None:
        return draw_overlay(image, detections)
    ids = track_ids_of(detections)
    labels = [
        f"{'' if i is None else f'#{i} '}{name} {score:.2f}" for i, name, score in zip(ids, detections.class_names, detections.scores)
    ]
    return draw_overlay(image, detections, labels=labels, color_keys=np.maximum(detections.track_ids, 0))


class VideoOutputs:
    """The three files of one video source in ``out_dir``: ``<name>.mp4``, ``<name>.jsonl`` and
    ``<name>.mot.txt``, opened at the first frame. The MP4 keeps the first frame's size (later frames of
    another size are scaled to it); the JSONL and MOT files keep each frame's own pixels."""

    def __init__(self, out_dir: Path, name: str, fps: float):
        self.out_dir, self.name, self.fps = out_dir, name, fps
        self.video_path = out_dir / f"{name}.mp4"
        self.jsonl_path = out_dir / f"{name}.jsonl"
        self.mot_path = out_dir / f"{name}.mot.txt"
        self._temporary: Path | None = None
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self._jsonl: BinaryIO | None = None
        self._mot: BinaryIO | None = None
        self.frames = 0

    def _open(self, width: int, height: int) -> None:
        self._temporary = temporary_beside(self.video_path)
        self._writer = cv2.VideoWriter(str(self._temporary), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (width, height))
        if not self._writer.isOpened():
            raise OSError(f"OpenCV cannot write an mp4v video to {self.out_dir}")
        self._size = (width, height)
        self._jsonl = line_file(self.jsonl_path)
        self._mot = line_file(self.mot_path)

    def write(self, index: int, time_s: float, image: np.ndarray, detections: Detections) -> None:
        """Frame ``index``'s overlay to the MP4, then its JSON line and MOT rows: the MP4 never has fewer
        frames than the JSONL has lines."""
        if self._writer is None:
            self._open(image.shape[1], image.shape[0])
        painted = tracked_overlay(image, detections)
        if painted.shape[1::-1] != self._size:
            painted = cv2.resize(painted, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(painted)
        self._jsonl.write((json.dumps(frame_record(index, time_s, detections)) + "\n").encode())
        if rows := mot_rows(index, detections):
            self._mot.write(rows.encode())
        self.frames += 1

    def close(self) -> None:
        """Finalise the MP4 and rename it into place; close the line files. Also after an interruption."""
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        os.replace(self._temporary, self.video_path)
        self._jsonl.close()
        self._mot.close()


class JsonArrayFile:
    """A JSON array written item by item to a temporary file, closed (``]``) and renamed by ``close``."""

    def __init__(self, target: Path):
        self.target = target
        self._temporary = temporary_beside(target)
        self._file = open(self._temporary, "w")
        self._file.write("[")
        self._count = 0

    def extend(self, items: list[Any]) -> None:
        for item in items:
            self._file.write((",\n" if self._count else "\n") + json.dumps(item))
            self._count += 1

    def close(self) -> None:
        if self._file.closed:
            return
        self._file.write("\n]\n")
        self._file.close()
        os.replace(self._temporary, self.target)
