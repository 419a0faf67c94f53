"""Video through the segmenter: decode, inference with paste, and drawing with encoding each in a thread of
their own, joined by bounded queues, so a slow consumer holds the producers back instead of growing memory.

    source thread --frames--> segmenter reader thread --> inference + paste (caller's thread)
        --> back in input order --> tracker --> writer thread (overlay, MP4, JSONL, MOT, COCO results)
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from .detections import Detections
from .outputs import VideoOutputs
from .segmenter import MAX_BATCH_PIXELS, Segmenter
from .sources import FrameSource
from .tracking import ByteTracker, make_tracker

DECODED_AHEAD = 2  # the segmenter's reader thread takes a batch at a time from these


def in_order(results: Iterable[tuple[Any, np.ndarray, Detections]]) -> Iterator[tuple[Any, np.ndarray, Detections]]:
    """The segmenter's (tag, image, detections) in the order of the sequence numbers that open the tags
    (a tag is its number, or a tuple that starts with it). ``Segmenter.stream`` batches frames by size, so
    after a size change a frame of the new size can finish before older ones; the segmenter holds at most a
    few batches back, so this buffer stays as small."""
    held: dict[int, tuple[Any, np.ndarray, Detections]] = {}
    upcoming = 0
    for result in results:
        tag = result[0]
        held[tag[0] if isinstance(tag, tuple) else tag] = result
        while upcoming in held:
            yield held.pop(upcoming)
            upcoming += 1


def track_frames(
    segmenter: Segmenter, frames: Iterable[np.ndarray], tracker: str | ByteTracker, frame_rate: float = 30.0
) -> Iterator[tuple[np.ndarray, Detections]]:
    """(frame, detections with ``track_ids``) for each frame of one video, in order: those scoring above
    the segmenter's threshold, as the image path gives them."""
    tracker = make_tracker(tracker, frame_rate=frame_rate) if isinstance(tracker, str) else tracker
    tagged = enumerate(frames)
    for _, image, detections in in_order(segmenter.stream(tagged, lowest_threshold(segmenter, tracker))):
        yield image, shown(tracker.update(detections), segmenter.score_threshold)


def lowest_threshold(segmenter: Segmenter, tracker: ByteTracker | None) -> float:
    """The score the segmenter keeps detections above: the lower of its own and what the tracker is fed."""
    return segmenter.score_threshold if tracker is None else min(segmenter.score_threshold, tracker.settings.feed_threshold)


def shown(tracked: Detections, score_threshold: float) -> Detections:
    """The tracked detections scoring above ``score_threshold``: the tracker saw lower ones too."""
    return tracked[tracked.scores > score_threshold]


class WriterThread:
    """Runs ``write(*item)`` for each put item in a thread. At most ``max_items`` items of at most
    ``max_pixels`` pixels in all wait (a single item of more is let through alone), so the queue holds about
    as much as one inference run, whatever sizes the frames take on the way. Its failure is raised in the
    putting thread; closing writes what is queued, then stops."""

    def __init__(self, write: Callable[..., None], max_items: int, max_pixels: int, name: str):
        self._write = write
        self._max_items = max_items
        self._max_pixels = max_pixels
        self._waiting: deque[tuple[int, tuple[Any, ...] | None]] = deque()
        self._waiting_pixels = 0
        self._changed = threading.Condition()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._waiting)
                pixels, item = self._waiting.popleft()
                self._waiting_pixels -= pixels
                self._changed.notify_all()
            if item is None:
                return
            if self._error is None:
                try:
                    self._write(*item)
                except BaseException as error:  # handed to the producer's thread
                    self._error = error

    def put(self, pixels: int, *item: Any) -> None:
        """Queue ``item``, which holds ``pixels`` pixels, once there is room for it."""
        self._raise()
        with self._changed:
            self._changed.wait_for(lambda: self._has_room(pixels))
            self._append(pixels, item)

    def _has_room(self, pixels: int) -> bool:
        if not self._waiting:
            return True
        return len(self._waiting) < self._max_items and self._waiting_pixels + pixels <= self._max_pixels

    def _append(self, pixels: int, item: tuple[Any, ...] | None) -> None:
        self._waiting.append((pixels, item))
        self._waiting_pixels += pixels
        self._changed.notify_all()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Write what is queued and stop. A Ctrl-C meanwhile waits for the thread (the outputs are closed
        next and must not be in use), then goes on."""
        with self._changed:
            self._append(0, None)
        interrupted = False
        while self._thread.is_alive():
            try:
                self._thread.join()
            except KeyboardInterrupt:
                interrupted = True
        self._raise()
        if interrupted:
            raise KeyboardInterrupt


def segment_source(
    segmenter: Segmenter,
    source: FrameSource,
    outputs: VideoOutputs,
    tracker: ByteTracker | None = None,
    drop_late: bool = False,
    on_frame: Callable[[int, Detections], None] | None = None,
) -> None:
    """Every frame of ``source`` segmented (and tracked) into ``outputs``, in order. ``on_frame(index,
    detections)`` runs in the writer thread after each frame is written. The outputs are finalised also when
    this stops early: an interruption, a source that dies, a failure."""
    threshold = lowest_threshold(segmenter, tracker)
    # Frames held at once: DECODED_AHEAD decoded, a batch read ahead and one in inference (the segmenter's),
    # a batch waiting to be written: a 4K frame is 25 MB.
    frames = source.frames(DECODED_AHEAD, drop_late)
    # Sequence numbers, not frame numbers, order the results: under drop_late the frame numbers have gaps.
    tagged = (((sequence, frame.index, frame.time_s), frame.image) for sequence, frame in enumerate(frames))
    results = in_order(segmenter.stream(tagged, threshold))

    def write(index: int, time_s: float, image: np.ndarray, detections: Detections) -> None:
        outputs.write(index, time_s, image, detections)
        if on_frame is not None:
            on_frame(index, detections)

    # As many frames wait to be written as one inference run takes: 8 small frames, a single 4K one (a queue
    # of eight 4K frames held 200 MB more at the peak). Bounded by pixels, so that this holds also for a
    # stream that grows from small frames to 4K.
    writer = WriterThread(write, segmenter.batch_size, MAX_BATCH_PIXELS, f"write-{source.name}")
    try:
        for (_, index, time_s), image, detections in results:
            if tracker is not None:
                detections = shown(tracker.update(detections), segmenter.score_threshold)
            writer.put(image.shape[0] * image.shape[1], index, time_s, image, detections)
        source.check_end()
    finally:
        try:
            results.close()
            writer.close()
        finally:
            outputs.close()
