"""Runs an exported model (``.onnx``, OpenVINO ``.xml`` or TensorRT ``.engine``) on images, folders of images
(recursive), video files, image sequences (``frames/%06d.png``), cameras (``0``, ``/dev/video0``) and network
streams (``rtsp://``, ``http://``), without torch. Writes per image ``<name>.png`` (the detections drawn over
it) and ``<name>.json``; per video ``<name>.mp4`` (drawn over every frame), ``<name>.jsonl`` (one line per
frame) and ``<name>.mot.txt`` (MOTChallenge rows), with identities under ``--track bytetrack``; and every
detection in COCO results format, one file per task: ``coco_bbox_results.json`` (boxes, box scores) and
``coco_segm_results.json`` (masks, mask scores).

``python -m runtime --model M INPUT... --out DIR``. Exit status: 0; 1 when some input could not be read or a
stream stopped (reported; the outputs so far are complete files); 2 for a bad model, option or argument; 130
when interrupted (Ctrl-C, SIGTERM; the outputs so far are complete files).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from command_line import UsageError, entry_parser, entry_point, positive_int
from contract.files import write_bytes

from .detections import COCO_TASKS, Detections
from .errors import ImageError, SegmenterError
from .images import read_image
from .options import add_backend_options
from .outputs import JsonArrayFile, VideoOutputs
from .overlay import draw_overlay
from .segmenter import Segmenter
from .sources import SourceEnded, is_stream_argument, is_video_file, open_source
from .tracking import TRACKERS, make_tracker
from .video import segment_source

PROG = "python -m runtime"
COCO_RESULTS = {task: f"coco_{task}_results.json" for task in COCO_TASKS}
INTERRUPTED = 130


@dataclass(frozen=True)
class InputFile:
    """An input file and the name of its outputs: its stem, or for a file found in a folder argument its
    path below that folder without the suffix (so equal names in different subfolders do not collide)."""

    path: Path
    name: str

    @property
    def is_video(self) -> bool:
        return is_video_file(self.path)

    def coco_image_id(self) -> int | str:
        """The name (an int when it is all digits, as COCO's file names are)."""
        return int(self.name) if self.name.isdigit() else self.name


def collect_inputs(arguments: Sequence[Path], out_dir: Path) -> list[InputFile]:
    """The files named by the arguments, folders searched recursively (hidden files and the output
    folder left out). ImageError for an argument that does not exist or outputs that would collide."""
    out_dir = out_dir.resolve()
    files = []
    for argument in arguments:
        if argument.is_dir():
            for path in sorted(argument.rglob("*")):
                relative = path.relative_to(argument)
                hidden = any(part.startswith(".") for part in relative.parts)
                if path.is_file() and not hidden and out_dir not in path.resolve().parents:
                    files.append(InputFile(path, relative.with_suffix("").as_posix()))
        elif argument.is_file():
            files.append(InputFile(argument, argument.stem))
        else:
            raise ImageError(f"{argument}: no such file or folder")
    owners: dict[str, Path] = {}
    for file in files:
        if file.name in owners:
            raise ImageError(f"{owners[file.name]} and {file.path} would both write {file.name}.* in --out")
        owners[file.name] = file.path
    return files


def write_json(path: Path, record: Any) -> None:
    write_bytes(path, json.dumps(record, indent=1).encode())


def write_png(path: Path, image: np.ndarray) -> None:
    ok, png = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"OpenCV could not encode {path.name} as PNG")
    write_bytes(path, png.tobytes())


def frame_count(location: str) -> int | None:
    """A video file's stated frame count (for the progress bar's ETA); None for a live source."""
    capture = cv2.VideoCapture(location)
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    capture.release()
    return count if count > 0 else None


@dataclass(frozen=True)
class StreamInput:
    """A video input: a file (found in the arguments or their folders) or a camera, stream URL or image
    sequence pattern given as an argument; ``name`` is its outputs' stem (None: the source's own)."""

    location: str
    name: str | None


class Run:
    """One CLI run: the segmenter, the output folder, the progress bar, the COCO results and failures."""

    def __init__(self, segmenter: Segmenter, out_dir: Path, bar: tqdm, args: argparse.Namespace):
        self.segmenter = segmenter
        self.out_dir = out_dir
        self.bar = bar
        self.args = args
        self.coco_results = {task: JsonArrayFile(out_dir / COCO_RESULTS[task]) for task in COCO_TASKS}
        self.failures = 0
        self.segmented = 0

    def skip(self, error: ImageError, stopped: bool = False) -> None:
        self.failures += 1
        self.bar.write(f"{'stopped' if stopped else 'skipped'}: {error}", file=sys.stderr)

    def readable_images(self, files: list[InputFile]) -> Iterator[tuple[InputFile, np.ndarray]]:
        """(file, image) for each file OpenCV can read; the others are reported and skipped. Consumed by
        the segmenter's reader thread."""
        for file in files:
            try:
                yield file, read_image(file.path)
            except ImageError as error:
                self.skip(error)
                self.bar.update(1)

    def images(self, files: list[InputFile]) -> None:
        for file, image, detections in self.segmenter.stream(self.readable_images(files)):
            write_png(self.out_dir / f"{file.name}.png", draw_overlay(image, detections))
            write_json(self.out_dir / f"{file.name}.json", detections.to_json(str(file.path)))
            self.record(detections, file.coco_image_id())

    def video(self, video: StreamInput) -> None:
        """A video source into <name>.mp4, .jsonl and .mot.txt; its frames' detections into the COCO results."""
        with open_source(video.location, video.name) as source:
            tracker = make_tracker(self.args.track, frame_rate=source.fps)
            outputs = VideoOutputs(self.out_dir, source.name, source.fps)
            try:
                segment_source(
                    self.segmenter,
                    source,
                    outputs,
                    tracker,
                    self.args.drop_late,
                    lambda index, detections: self.record(detections, f"{source.name}#{index}"),
                )
            finally:
                if source.dropped:
                    self.bar.write(f"{source.location}: dropped {source.dropped} late frames (--drop-late)", file=sys.stderr)

    def record(self, detections: Detections, image_id: int | str) -> None:
        for task, results in self.coco_results.items():
            results.extend(detections.to_coco(image_id, task))
        self.segmented += 1
        self.bar.update(1)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = entry_parser(PROG, __doc__)
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image or video files, folders of them, image "
        "sequence patterns (frames/%%06d.png), cameras (0, /dev/video0) or stream URLs (rtsp://, http://)",
    )
    parser.add_argument(
        "--model",
        required=True,
        help="exported .onnx, OpenVINO .xml (with its .bin), TensorRT "
        ".engine with its .engine.json, or a served model: grpc://HOST:8001/NAME, http://HOST:8000/NAME",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    add_backend_options(parser)
    parser.add_argument("--batch-size", type=positive_int, help="images per run (default 8, at most the model's limit)")
    parser.add_argument(
        "--score-threshold",
        type=float,
        default=0.3,
        help="keep detections scoring above (default "
        "0.3); with --track the tracker also sees lower ones, to keep tracks through occlusions",
    )
    parser.add_argument("--track", choices=TRACKERS, help="give video detections identities over time")
    parser.add_argument(
        "--drop-late",
        action="store_true",
        help="a camera or live stream: drop the frames that arrive while the model is busy (counted) instead of falling behind",
    )
    return parser.parse_args(argv)


def raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def terminated_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the run like Ctrl-C does, so the outputs so far are finalised (main thread only: Python
    delivers signals there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def split_inputs(arguments: Sequence[str], out_dir: Path) -> tuple[list[InputFile], list[StreamInput]]:
    """Images (files and folders' files) and videos (video files, cameras, streams, sequences), in order."""
    streams = [argument for argument in arguments if is_stream_argument(argument)]
    files = collect_inputs([Path(argument) for argument in arguments if argument not in streams], out_dir)
    videos = [StreamInput(str(file.path), file.name) for file in files if file.is_video]
    return [file for file in files if not file.is_video], videos + [StreamInput(argument, None) for argument in streams]


@entry_point(PROG, bad_input=(SegmenterError,))
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    images, videos = split_inputs(args.inputs, args.out)
    segmenter = Segmenter(args.model, args.backend, args.device, args.precision, args.score_threshold, args.threads, args.batch_size)
    counts = [frame_count(video.location) if not is_stream_argument(video.location) else None for video in videos]
    total = None if None in counts else len(images) + sum(counts)
    start = time.perf_counter()
    with segmenter, terminated_as_interrupt(), tqdm(total=total, unit="frame", desc="segmenting", dynamic_ncols=True) as bar:
        run = None
        try:
            run = Run(segmenter, args.out, bar, args)
            try:
                run.images(images)
                for video in videos:
                    try:
                        run.video(video)
                    except ImageError as error:  # SourceEnded included: the outputs so far are complete
                        run.skip(error, stopped=isinstance(error, SourceEnded))
            finally:
                for results in run.coco_results.values():
                    results.close()
        except KeyboardInterrupt:
            done = run.segmented if run else 0
            bar.write(f"interrupted after {done} frames; the outputs so far in {args.out} are complete", file=sys.stderr)
            return INTERRUPTED
        except OSError as error:
            raise UsageError(f"--out {args.out}: {error.strerror or error}") from None
    elapsed = time.perf_counter() - start
    print(
        f"{run.segmented} images in {elapsed:.1f} s ({run.segmented / elapsed:.1f} images/s), "
        f"backend {segmenter.backend_name} on {segmenter.executed_on} ({segmenter.precision}); outputs in {args.out}"
    )
    if run.failures:
        print(f"{run.failures} input(s) could not be read or stopped early (see above)", file=sys.stderr)
    return 1 if run.failures else 0


if __name__ == "__main__":
    sys.exit(main())
