"""Frame sources: video files (OpenCV, else PyAV), image sequences (``frames/%06d.png``), cameras (``0``,
``/dev/video0``) and network streams (``rtsp://``, ``http://`` ...), each as a numbered stream of BGR frames
decoded in a thread of its own into a bounded queue.

A file (a source that states its frame count) never loses a frame: when the consumer is slow, decoding
waits. A live source (camera, network stream) keeps every frame too unless ``drop_late`` is set; then a frame
that finds the queue full replaces the oldest waiting one, which is counted in ``dropped``.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from .errors import ImageError
from .images import read_image

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".ts", ".gif"}
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
FALLBACK_FPS = 25.0  # for a video whose container does not state its frame rate
CAMERA_DEVICE = re.compile(r"^(\d+|/dev/video\d+)$")


def is_stream_argument(text: str) -> bool:
    """Whether a command-line input names a camera, a network stream or an image sequence pattern rather
    than a file or folder."""
    return bool(CAMERA_DEVICE.match(text)) or text.lower().startswith(STREAM_SCHEMES) or "%" in Path(text).name


def is_video_file(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


class Frame(NamedTuple):
    """A decoded frame: its 0-based number, its time in seconds (a file's from its frame rate, a live
    source's since its first frame) and the BGR uint8 image [H, W, 3]."""

    index: int
    time_s: float
    image: np.ndarray


class SourceEnded(ImageError):
    """A source stopped before its end: a live stream or camera that went away, a file cut short."""


@dataclass
class FrameSource:
    """An opened frame source. ``name``: the stem of its outputs; ``fps``: its frame rate (FALLBACK_FPS when
    unstated); ``frame_count``: None for a live source; ``dropped``: frames discarded under drop_late."""

    location: str
    name: str
    live: bool
    fps: float
    frame_count: int | None
    _capture: object = field(repr=False)
    dropped: int = 0
    decoded: int = 0
    _failure: ImageError | None = field(default=None, repr=False)

    def read(self) -> Iterator[np.ndarray]:
        """The frames, in the calling thread."""
        if isinstance(self._capture, list):  # an image sequence's files
            for path in self._capture:
                yield read_image(path)
        elif isinstance(self._capture, cv2.VideoCapture):
            while True:
                ok, image = self._capture.read()
                if not ok:
                    return
                yield image
        else:
            stream = self._capture.streams.video[0]
            for frame in self._capture.decode(stream):
                yield frame.to_ndarray(format="bgr24")

    def close(self) -> None:
        if isinstance(self._capture, cv2.VideoCapture):
            self._capture.release()
        elif not isinstance(self._capture, list):
            self._capture.close()

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def frames(self, capacity: int, drop_late: bool = False) -> Iterator[Frame]:
        """The frames, decoded ``capacity`` ahead in a thread. It ends quietly also when decoding fails or
        a source stops early, so that every frame before reaches its outputs: ``check_end`` tells then."""
        waiting: queue.Queue = queue.Queue(maxsize=capacity)
        stop = threading.Event()
        dropping = drop_late and self.live
        thread = threading.Thread(target=self._decode, args=(waiting, stop, dropping), name=f"decode-{self.name}", daemon=True)
        thread.start()
        try:
            while (item := waiting.get()) is not None:
                yield item
        finally:
            stop.set()
            while thread.is_alive():  # unblock a decoder waiting on a full queue
                try:
                    waiting.get_nowait()
                except queue.Empty:
                    thread.join(0.05)

    def _decode(self, waiting: queue.Queue, stop: threading.Event, dropping: bool) -> None:
        start = time.monotonic()
        try:
            for index, image in enumerate(self.read()):
                time_s = time.monotonic() - start if self.live else index / self.fps
                if not self._put(waiting, Frame(index, time_s, image), stop, dropping):
                    return
                self.decoded += 1
        except Exception as error:  # told by check_end, after the frames before it
            self._failure = ImageError(f"{self.location}: decoding failed after {self.decoded} frames: {error}")
        self._put(waiting, None, stop, False)

    def _put(self, waiting: queue.Queue, item: object, stop: threading.Event, dropping: bool) -> bool:
        """Queue ``item`` (when dropping and full, at once in place of the oldest frame); False once stopped."""
        while not stop.is_set():
            try:
                if dropping:
                    waiting.put_nowait(item)
                else:
                    waiting.put(item, timeout=0.1)
                return True
            except queue.Full:
                if dropping:
                    try:
                        waiting.get_nowait()
                        self.dropped += 1
                    except queue.Empty:
                        pass
        return False

    def check_end(self) -> None:
        """After the last frame: ImageError when decoding failed or there was no frame, SourceEnded when a
        live source stopped or a file ended before its stated frame count."""
        if self._failure is not None:
            raise self._failure
        if self.decoded == 0:
            raise ImageError(f"{self.location}: no frame could be decoded")
        if self.live:
            raise SourceEnded(f"{self.location}: the stream stopped after {self.decoded} frames")
        if self.frame_count and self.decoded < self.frame_count:
            raise SourceEnded(f"{self.location}: decoding stopped after {self.decoded} of {self.frame_count} frames")


def open_source(location: str, name: str | None = None) -> FrameSource:
    """The source named by a command-line input: a camera index or ``/dev/videoN``, a stream URL, an image
    sequence pattern or a video file. ImageError (one line, naming it) when it cannot be opened."""
    if CAMERA_DEVICE.match(location):
        return _open_capture(location, name or f"camera{location.rsplit('video', 1)[-1]}", live=True)
    if location.lower().startswith(STREAM_SCHEMES):
        return _open_capture(location, name or _stream_name(location), live=None)
    path = Path(location)
    if "%" in path.name:
        return _open_sequence(path, name or _sequence_name(path))
    if not path.is_file():
        raise ImageError(f"{location}: no such file")
    try:
        return _open_capture(location, name or path.stem, live=False)
    except ImageError:
        return _open_pyav(path, name or path.stem)


def _open_sequence(pattern: Path, name: str) -> FrameSource:
    """Numbered images (``frames/%06d.png``) from the first number found among 0-4 up to the first gap,
    read one by one at their own sizes (OpenCV's sequence reader would scale them all to the first)."""
    try:
        first = next(i for i in range(5) if Path(str(pattern) % i).is_file())
    except (StopIteration, TypeError, ValueError):
        raise ImageError(f"{pattern}: no image numbered like this pattern") from None
    paths = []
    while (path := Path(str(pattern) % (first + len(paths)))).is_file():
        paths.append(path)
    return FrameSource(str(pattern), name, live=False, fps=FALLBACK_FPS, frame_count=len(paths), _capture=paths)


def _sequence_name(path: Path) -> str:
    """An image sequence's pattern without its number (``run_%04d.png``: ``run``), or its folder's name when
    nothing else is left."""
    return re.sub(r"%0?\d*d", "", path.stem).strip("_-. ") or path.parent.name or "frames"


def _stream_name(url: str) -> str:
    tail = url.split("://", 1)[1].split("?", 1)[0].rstrip("/")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(tail).stem or tail) or "stream"


def _open_capture(location: str, name: str, live: bool | None) -> FrameSource:
    """live=None: decided by whether the source states a frame count (a network file does, a live stream
    not)."""
    if live and location.isdigit():
        capture = cv2.VideoCapture(int(location))
    else:
        capture = cv2.VideoCapture(location)
    if not capture.isOpened():
        capture.release()
        what = "camera" if live else "stream" if live is None else "video"
        raise ImageError(f"{location}: not a {what} OpenCV can open")
    stated = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    count = stated if stated > 0 and not live else None
    fps = capture.get(cv2.CAP_PROP_FPS)
    fps = fps if 0 < fps < 1000 else FALLBACK_FPS
    return FrameSource(location, name, live=count is None, fps=fps, frame_count=count, _capture=capture)


def _open_pyav(path: Path, name: str) -> FrameSource:
    """A file OpenCV cannot open, through PyAV (FFmpeg's own decoders), else ImageError."""
    try:
        import av

        container = av.open(str(path))
        if not container.streams.video:
            container.close()
            raise ImageError(f"{path}: has no video stream")
    except ImportError:
        raise ImageError(f"{path}: not a video OpenCV can read") from None
    except (av.error.FFmpegError, ValueError, OSError):
        raise ImageError(f"{path}: not a video OpenCV or PyAV can read") from None
    stream = container.streams.video[0]
    fps = float(stream.average_rate) if stream.average_rate else FALLBACK_FPS
    return FrameSource(str(path), name, live=False, fps=fps, frame_count=stream.frames or None, _capture=container)
