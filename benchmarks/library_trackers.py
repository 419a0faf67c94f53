"""Roboflow's ``trackers`` 2.x (SORT, ByteTrack, OC-SORT, BoT-SORT, C-BIoU) on the detections our tracker is
fed, for ``python -m benchmarks.tracking --library-trackers``.

``trackers`` requires numpy 2, and our one environment stays on numpy 1 for PyTriton (docs/streams.md), so
the benchmark gives it a virtual environment of its own, made once under ``~/.cache/yolact/venvs`` (about
a minute, from PyPI), and runs ``library_trackers_worker.py`` there. The detections travel as .npz: the
same boxes, scores and classes our ByteTrack gets, with the same twins left out, so the trackers differ
only in how they associate.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

TRACKERS_REQUIREMENT = "trackers==2.6.1"
WORKER = Path(__file__).with_name("library_trackers_worker.py")
# Each tracker twice: as the library ships it, and with its score thresholds moved to where this detector's
# true shapes score (0.3-0.6; the library's 0.6-0.7 expect a pedestrian detector's 0.8-0.9, and would leave
# most of our detections to the second association), a 60-frame memory and 5 frames to confirm, as ours.
# BoT-SORT's camera-motion compensation needs the frames and is off: the camera is still.
TRACKER_CLASSES = {
    "SORT": "SORTTracker",
    "ByteTrack": "ByteTrackTracker",
    "OC-SORT": "OCSORTTracker",
    "BoT-SORT": "BoTSORTTracker",
    "C-BIoU": "CBIoUTracker",
}
FITTED_KWARGS = {
    "SORT": {"track_activation_threshold": 0.3, "minimum_iou_threshold": 0.2},
    "ByteTrack": {"track_activation_threshold": 0.4, "high_conf_det_threshold": 0.3},
    "OC-SORT": {"high_conf_det_threshold": 0.3, "minimum_iou_threshold": 0.2},
    "BoT-SORT": {"track_activation_threshold": 0.4, "high_conf_det_threshold": 0.3, "enable_cmc": False},
    "C-BIoU": {"track_activation_threshold": 0.4, "high_conf_det_threshold": 0.3},
}
SHARED_FITTED_KWARGS = {"lost_track_buffer": 60, "minimum_consecutive_frames": 5}
DEFAULTS_LABEL = "library defaults"
FITTED_LABEL = "fitted to these scores"

# One video's detections as fed to a tracker: per frame, (boxes [n, 4] xyxy, scores [n], class ids [n]).
FedVideo = list[tuple[np.ndarray, np.ndarray, np.ndarray]]


def library_trackers() -> list[dict]:
    """Name, class and keyword arguments of every ``trackers`` tracker the benchmark runs."""
    entries = []
    for name, cls in TRACKER_CLASSES.items():
        defaults = {"enable_cmc": False} if name == "BoT-SORT" else {}
        entries.append({"name": f"trackers {name} ({DEFAULTS_LABEL})", "class": cls, "kwargs": defaults})
        entries.append(
            {"name": f"trackers {name} ({FITTED_LABEL})", "class": cls, "kwargs": {**SHARED_FITTED_KWARGS, **FITTED_KWARGS[name]}}
        )
    return entries


def environment_folder() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "yolact" / "venvs" / TRACKERS_REQUIREMENT.replace("==", "-")


def library_python() -> Path:
    """The interpreter of the environment that has ``trackers``, made on first use. A folder left by an
    interrupted install (no ``installed`` mark) is made again."""
    folder = environment_folder()
    python, mark = folder / "bin" / "python", folder / "installed"
    if mark.exists():
        return python
    shutil.rmtree(folder, ignore_errors=True)
    print(f"making an environment for {TRACKERS_REQUIREMENT} (numpy 2) in {folder}, once", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, env=clean_environment())
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", TRACKERS_REQUIREMENT],
        check=True,
        env=clean_environment(),
    )
    mark.write_text(TRACKERS_REQUIREMENT + "\n")
    return python


def clean_environment() -> dict[str, str]:
    """This process's environment less what would point the other interpreter at our packages."""
    return {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}


def track_with_library(videos: list[FedVideo], frame_rate: float) -> dict[str, list[list[np.ndarray]]]:
    """Every ``library_trackers()`` entry over every video: name -> per video, per frame, the track id of
    each fed detection (-1: on no track)."""
    entries = library_trackers()
    arrays: dict[str, np.ndarray] = {}
    for v, frames in enumerate(videos):
        arrays[f"v{v}_boxes"] = np.concatenate([boxes.reshape(-1, 4) for boxes, _, _ in frames]).astype(np.float32)
        arrays[f"v{v}_scores"] = np.concatenate([scores for _, scores, _ in frames]).astype(np.float32)
        arrays[f"v{v}_class_ids"] = np.concatenate([class_ids for _, _, class_ids in frames]).astype(np.int64)
        arrays[f"v{v}_counts"] = np.array([len(scores) for _, scores, _ in frames], dtype=np.int64)
    python = library_python()
    with tempfile.TemporaryDirectory() as folder:
        given, spec, answer = (Path(folder) / name for name in ("detections.npz", "spec.json", "ids.npz"))
        np.savez(given, **arrays)
        spec.write_text(json.dumps({"trackers": entries, "videos": len(videos), "frame_rate": frame_rate}))
        subprocess.run([str(python), str(WORKER), str(given), str(spec), str(answer)], check=True, env=clean_environment())
        ids = np.load(answer)
        return {
            entry["name"]: [np.split(ids[f"t{t}_v{v}_ids"], np.cumsum(arrays[f"v{v}_counts"])[:-1]) for v in range(len(videos))]
            for t, entry in enumerate(entries)
        }
