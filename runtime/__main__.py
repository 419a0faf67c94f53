"""Runs an exported model (``.onnx``, OpenVINO ``.xml`` or TensorRT ``.engine``) on images, folders of images
(recursive) and video files, without torch. Writes per image ``<name>.png`` (the detections drawn over it)
and ``<name>.json``; per video ``<name>.mp4`` (drawn over every frame) and ``<name>.json`` (one record per
frame); and every detection in COCO results format, one file per task: ``coco_bbox_results.json`` (boxes,
box scores) and ``coco_segm_results.json`` (masks, mask scores).

``python -m runtime --model M INPUT... --out DIR``. Exit status: 0; 1 when some input could not be read
(reported and skipped); 2 for a bad model, option or argument.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from command_line import UsageError, entry_parser, entry_point
from contract.files import replaced_on_success, write_bytes

from .detections import COCO_TASKS, Detections
from .errors import ImageError, SegmenterError
from .images import read_image
from .overlay import draw_overlay
from .segmenter import Segmenter

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv"}
PROG = "python -m runtime"
COCO_RESULTS = {task: f"coco_{task}_results.json" for task in COCO_TASKS}
FALLBACK_FPS = 25.0  # for a video whose container does not state its frame rate


@dataclass(frozen=True)
class InputFile:
    """An input file and the name of its outputs: its stem, or for a file found in a folder argument its
    path below that folder without the suffix (so equal names in different subfolders do not collide)."""

    path: Path
    name: str

    @property
    def is_video(self) -> bool:
        return self.path.suffix.lower() in VIDEO_SUFFIXES

    def coco_image_id(self, frame: int | None = None) -> int | str:
        """The name (an int when it is all digits, as COCO's file names are), ``name#frame`` for a frame."""
        if frame is not None:
            return f"{self.name}#{frame}"
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


def frame_count(file: InputFile) -> int:
    capture = cv2.VideoCapture(str(file.path))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    capture.release()
    return max(count, 0)


class Run:
    """One CLI run: the segmenter, the output folder, the progress bar, the COCO results and failures."""

    def __init__(self, segmenter: Segmenter, out_dir: Path, bar: tqdm):
        self.segmenter = segmenter
        self.out_dir = out_dir
        self.bar = bar
        self.coco_results: dict[str, list[dict[str, Any]]] = {task: [] for task in COCO_TASKS}
        self.failures = 0
        self.segmented = 0

    def skip(self, error: ImageError) -> None:
        self.failures += 1
        self.bar.write(f"skipped: {error}", file=sys.stderr)

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

    def video(self, file: InputFile) -> None:
        capture = cv2.VideoCapture(str(file.path))
        try:
            if not capture.isOpened():
                raise ImageError(f"{file.path}: not a video OpenCV can read")
            fps = capture.get(cv2.CAP_PROP_FPS) or FALLBACK_FPS
            frames = []
            with replaced_on_success(self.out_dir / f"{file.name}.mp4") as temporary:
                writer = None
                # One video's frames share a size, so the segmenter returns them in order.
                for index, frame, detections in self.segmenter.stream(enumerate(iter_frames(capture))):
                    if writer is None:
                        writer = cv2.VideoWriter(str(temporary), cv2.VideoWriter_fourcc(*"mp4v"), fps, frame.shape[1::-1])
                        if not writer.isOpened():
                            raise OSError(f"OpenCV cannot write an mp4v video to {temporary.parent}")
                    writer.write(draw_overlay(frame, detections))
                    frames.append(detections.to_json(f"{file.path}#{index}"))
                    self.record(detections, file.coco_image_id(index))
                if writer is None:
                    raise ImageError(f"{file.path}: no frame OpenCV can decode")
                writer.release()
            write_json(self.out_dir / f"{file.name}.json", {"video": str(file.path), "fps": fps, "frames": frames})
        finally:
            capture.release()

    def record(self, detections: Detections, image_id: int | str) -> None:
        for task, results in self.coco_results.items():
            results.extend(detections.to_coco(image_id, task))
        self.segmented += 1
        self.bar.update(1)


def iter_frames(capture: cv2.VideoCapture) -> Iterator[np.ndarray]:
    while True:
        ok, frame = capture.read()
        if not ok:
            return
        yield frame


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = entry_parser(PROG, __doc__)
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="image or video files, or folders of them")
    parser.add_argument("--model", required=True, help="exported .onnx, OpenVINO .xml (with its .bin), TensorRT "
                        ".engine with its .engine.json, or a served model: grpc://HOST:8001/NAME, http://HOST:8000/NAME")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--backend", default="auto", help="auto (default), onnxruntime, openvino or tensorrt")
    parser.add_argument("--device", help="cpu, cuda[:N], gpu[.N] (OpenVINO) or auto; default: the backend's own")
    parser.add_argument("--precision", help="fp32, fp16 or bf16; default fp32 (a TensorRT engine: its own)")
    parser.add_argument("--batch-size", type=int, help="images per run (default 8, at most the model's limit)")
    parser.add_argument("--score-threshold", type=float, default=0.3, help="keep detections scoring above (default 0.3)")
    parser.add_argument("--threads", type=int, help="intra-op threads (onnxruntime, openvino)")
    return parser.parse_args(argv)


@entry_point(PROG, bad_input=(SegmenterError,))
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    files = collect_inputs(args.inputs, args.out)
    segmenter = Segmenter(args.model, args.backend, args.device, args.precision, args.score_threshold, args.threads, args.batch_size)
    images = [file for file in files if not file.is_video]
    videos = [file for file in files if file.is_video]
    total = len(images) + sum(frame_count(file) for file in videos)
    start = time.perf_counter()
    with segmenter, tqdm(total=total, unit="img", desc="segmenting") as bar:
        run = Run(segmenter, args.out, bar)
        try:
            run.images(images)
            for file in videos:
                try:
                    run.video(file)
                except ImageError as error:
                    run.skip(error)
            for task, results in run.coco_results.items():
                write_json(args.out / COCO_RESULTS[task], results)
        except OSError as error:
            raise UsageError(f"--out {args.out}: {error.strerror or error}") from None
    elapsed = time.perf_counter() - start
    print(
        f"{run.segmented} images in {elapsed:.1f} s ({run.segmented / elapsed:.1f} images/s), "
        f"backend {segmenter.backend_name} on {segmenter.executed_on} ({segmenter.precision}); outputs in {args.out}"
    )
    if run.failures:
        print(f"{run.failures} input(s) could not be read (see above)", file=sys.stderr)
    return 1 if run.failures else 0


if __name__ == "__main__":
    sys.exit(main())
