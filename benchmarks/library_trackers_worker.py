"""Runs Roboflow's ``trackers`` over detections saved by ``benchmarks.library_trackers``, inside the
environment of its own that ``trackers`` needs (numpy 2, which our one environment cannot have; see
docs/streams.md). It imports nothing of this project, only numpy, supervision and trackers.

``python library_trackers_worker.py IN.npz SPEC.json OUT.npz``. IN holds, per video ``v``: ``v{v}_boxes``
[n, 4] xyxy, ``v{v}_scores`` [n], ``v{v}_class_ids`` [n] and ``v{v}_counts`` [frames] (detections per frame,
in order). SPEC names each tracker's class and keyword arguments and gives the frame rate. OUT holds, per
tracker ``t`` and video ``v``, ``t{t}_v{v}_ids`` [n]: the track id each detection got, -1 for none.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import supervision as sv
import trackers

ROW_KEY = "row"


def track_video(tracker, boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The track id of every detection of one video (frames in order), -1 where the tracker gave none."""
    ids = np.full(len(boxes), -1, dtype=np.int64)
    start = 0
    for count in counts:
        rows = np.arange(start, start + count)
        given = sv.Detections(xyxy=boxes[rows].reshape(-1, 4), confidence=scores[rows], class_id=class_ids[rows], data={ROW_KEY: rows})
        tracked = tracker.update(given)
        if len(tracked) and tracked.tracker_id is not None:
            ids[np.asarray(tracked.data[ROW_KEY], dtype=np.int64)] = tracked.tracker_id
        start += count
    return ids


def main(argv: list[str]) -> int:
    detections_path, spec_path, out_path = argv
    detections = np.load(detections_path)
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    answers = {}
    for t, entry in enumerate(spec["trackers"]):
        for v in range(spec["videos"]):
            tracker = getattr(trackers, entry["class"])(frame_rate=spec["frame_rate"], **entry["kwargs"])
            answers[f"t{t}_v{v}_ids"] = track_video(
                tracker, *(detections[f"v{v}_{part}"] for part in ("boxes", "scores", "class_ids", "counts"))
            )
        print(f"{entry['name']}: {spec['videos']} videos tracked", flush=True)
    np.savez(out_path, **answers)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
