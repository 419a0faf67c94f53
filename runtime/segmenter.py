"""``Segmenter``: a model on a backend, from images (arrays or files, any sizes) to per-image detections."""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple, Sequence, Union

import cv2
import numpy as np

from contract import PRECISION_KEY

from .backends import is_server_url, open_backend
from .detections import Detections, RawOutputs, paste_detections
from .errors import ImageError, ModelError
from .images import checked_image, read_image
from .metadata import class_names_from

DEFAULT_BATCH_SIZE = 8
# How many batches' worth of images may wait for others of their size before the fullest size group runs
# anyway: bounds memory when every image has its own size.
WAITING_BATCHES = 4
# The most pixels of one batch: a graph of dynamic size makes a float copy of its whole uint8 batch before it
# resizes (12 bytes a pixel), so 8 frames of 4K took 1.7 GB; one 4K frame's worth runs 4K frames one at a
# time, 1080p four at a time and 720p at the full batch size. Batching large frames gains little: their
# time goes to the per-pixel resize.
MAX_BATCH_PIXELS = 3840 * 2160

ImageSource = Union[np.ndarray, str, os.PathLike]


class Pending(NamedTuple):
    """An image waiting for its batch: the caller's tag, the image, and what the graph gets (the image, or
    for a fixed-size graph the image resized)."""

    tag: Any
    image: np.ndarray
    network_input: np.ndarray


class Segmenter:
    """An exported YOLACT model ready to run.

    model: a ``.onnx`` from ``python -m export``, an OpenVINO IR ``.xml`` (with its ``.bin``) from ``--to
    openvino``, or a TensorRT ``.engine`` (with its ``.engine.json``); or ``grpc://host:port/<name>`` /
    ``http://host:port/<name>``: the model on a Triton server (the paste runs here).
    backend: ``auto`` (engine -> tensorrt; IR -> openvino; ONNX -> onnxruntime if installed, else
    openvino), ``onnxruntime``, ``openvino`` or ``tensorrt``. device: None for the backend's default (onnxruntime: its best providers;
    openvino: cpu; tensorrt: cuda:0), or cpu, cuda[:N] (onnxruntime, tensorrt), gpu[.N] (openvino), auto.
    precision: None for the default (fp32; fp16 on onnxruntime's TensorRT provider; the engine's own on
    tensorrt), or fp32, fp16, bf16. score_threshold: detections scoring above it are kept. threads:
    intra-op threads (onnxruntime, openvino). batch_size: images per run (default 8, at most the model's
    limit). timeout_s: for a server, how long to wait for an answer (default 30 s).
    """

    def __init__(
        self,
        model: str | os.PathLike,
        backend: str = "auto",
        device: str | None = None,
        precision: str | None = None,
        score_threshold: float = 0.3,
        threads: int | None = None,
        batch_size: int | None = None,
        timeout_s: float | None = None,
    ):
        if not 0 <= score_threshold < 1:
            raise ModelError(f"score threshold {score_threshold}: must be in [0, 1)")
        self.model = model if is_server_url(model) else Path(model)
        self.score_threshold = score_threshold
        self._backend = open_backend(self.model, backend, device, precision, threads, timeout_s)
        try:
            self.class_names = class_names_from(self._backend.metadata, self.model)
            self.batch_size = self._checked_batch_size(batch_size)
        except ModelError:
            self._backend.close()
            raise

    def _checked_batch_size(self, batch_size: int | None) -> int:
        limit = self.max_batch
        if batch_size is None:
            return min(DEFAULT_BATCH_SIZE, limit or DEFAULT_BATCH_SIZE)
        if batch_size < 1:
            raise ModelError(f"batch size {batch_size}: must be at least 1")
        if limit is not None and batch_size > limit:
            raise ModelError(f"batch size {batch_size}: {self.model} takes at most {limit} images per batch")
        return batch_size

    @property
    def backend_name(self) -> str:
        return self._backend.name

    @property
    def executed_on(self) -> str:
        """What the backend actually runs on: onnxruntime's session providers, OpenVINO's execution
        devices, or the GPU's name."""
        return self._backend.executed_on

    @property
    def precision(self) -> str:
        """The precision the backend computes in; for an INT8 (QDQ) graph, that of its quantized network and
        of the rest."""
        computes = self._backend.precision
        if computes != "int8" and self.metadata.get(PRECISION_KEY, "").startswith("int8"):
            return f"int8 network, {computes} elsewhere"
        return computes

    @property
    def metadata(self) -> dict[str, str]:
        """The model's ``yolact.*`` metadata (values as written: JSON for structured ones)."""
        return self._backend.metadata

    @property
    def max_batch(self) -> int | None:
        """The most images per run (a graph's static batch dimension, an engine's profile), or None: no
        limit. Short batches for a static batch dimension are filled up with blank images."""
        return self._backend.max_batch

    @property
    def input_size(self) -> tuple[int, int] | None:
        """(H, W) when the graph takes only that size (images are resized to it), else None."""
        return self._backend.input_size

    def infer(self, batch: np.ndarray) -> RawOutputs:
        """The graph alone on a uint8 BGR batch [B, H, W, 3] of one size: padded outputs, masks at
        prototype resolution."""
        if not isinstance(batch, np.ndarray) or batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[3] != 3:
            raise ImageError(f"batch: expected a uint8 array [B, H, W, 3], got {getattr(batch, 'shape', type(batch).__name__)}")
        if self.max_batch is not None and len(batch) > self.max_batch:
            raise ModelError(f"batch of {len(batch)} images: {self.model} takes at most {self.max_batch}")
        if self.input_size is not None and batch.shape[1:3] != self.input_size:
            raise ImageError(
                f"batch of {batch.shape[2]}x{batch.shape[1]} images: {self.model} takes only {self.input_size[1]}x{self.input_size[0]}"
            )
        count = len(batch)
        if self._backend.fixed_batch and count < self.max_batch:
            # A static batch dimension takes exactly max_batch images: fill up with blank ones.
            batch = np.concatenate([batch, np.zeros((self.max_batch - count, *batch.shape[1:]), np.uint8)])
        raw = self._backend.run(np.ascontiguousarray(batch))
        return RawOutputs(*(output[:count] for output in raw))

    def __call__(self, images: ImageSource | Sequence[ImageSource]) -> list[Detections]:
        """Detections of each image (one HxWx3 uint8 BGR array or file path, or a list of them), in order."""
        single = isinstance(images, (str, os.PathLike)) or (isinstance(images, np.ndarray) and images.ndim == 3)
        sources = [images] if single else list(images)
        results: list[Detections] = [None] * len(sources)  # type: ignore[list-item]
        # A generator, so that the reader thread of stream() is the one decoding the files.
        loaded = ((index, _load(source)) for index, source in enumerate(sources))
        for index, _, detections in self.stream(loaded):
            results[index] = detections
        return results

    def stream(
        self, tagged_images: Iterable[tuple[Any, np.ndarray]], score_threshold: float | None = None
    ) -> Iterator[tuple[Any, np.ndarray, Detections]]:
        """(tag, image, detections) for each (tag, image), as batches finish: images of one size go
        through the graph together and come out in their input order; sizes may interleave. The input
        iterable is consumed in a reader thread, one batch ahead of inference, so decoding overlaps it.
        score_threshold: for this stream instead of the segmenter's own."""
        threshold = self.score_threshold if score_threshold is None else score_threshold
        waiting: dict[tuple[int, ...], list[Pending]] = {}
        for chunk in self._read_ahead(tagged_images):
            for pending in chunk:
                shape = pending.network_input.shape
                waiting.setdefault(shape, []).append(pending)
                if len(waiting[shape]) == self.batch_limit(shape):
                    yield from self._segment(waiting.pop(shape), threshold)
            while sum(map(len, waiting.values())) >= WAITING_BATCHES * self.batch_size:
                yield from self._segment(waiting.pop(max(waiting, key=lambda shape: len(waiting[shape]))), threshold)
        for group in waiting.values():
            yield from self._segment(group, threshold)

    def batch_limit(self, shape: tuple[int, ...]) -> int:
        """Images of network-input ``shape`` [H, W, 3] per run: batch_size, fewer for frames so large that a
        batch would pass MAX_BATCH_PIXELS, at least one."""
        return max(1, min(self.batch_size, MAX_BATCH_PIXELS // max(1, shape[0] * shape[1])))

    def _read_ahead(self, tagged_images: Iterable[tuple[Any, np.ndarray]]) -> Iterator[list[Pending]]:
        """Chunks of up to batch_size images and at most about MAX_BATCH_PIXELS, the next one prepared in a
        thread."""
        items = iter(tagged_images)

        def next_chunk() -> list[Pending]:
            chunk: list[Pending] = []
            pixels = 0
            for tag, image in itertools.islice(items, self.batch_size):
                chunk.append(Pending(tag, image, self._network_input(image, tag)))
                pixels += image.shape[0] * image.shape[1]
                if pixels >= MAX_BATCH_PIXELS:
                    break
            return chunk

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="segmenter-reader") as reader:
            upcoming = reader.submit(next_chunk)
            while chunk := upcoming.result():
                upcoming = reader.submit(next_chunk)
                yield chunk

    def _network_input(self, image: np.ndarray, tag: Any) -> np.ndarray:
        checked_image(image, f"image {tag}")
        if self.input_size is None or image.shape[:2] == self.input_size:
            return image
        # A graph of fixed input size takes only that size. OpenCV's uint8 bilinear resize is close to, not
        # bit-identical with, the float resize that a graph of dynamic size does inside.
        return cv2.resize(image, self.input_size[::-1], interpolation=cv2.INTER_LINEAR)

    def track(
        self, frames: Iterable[np.ndarray], tracker: Any = "bytetrack", frame_rate: float = 30.0
    ) -> Iterator[tuple[np.ndarray, Detections]]:
        """(frame, detections with ``track_ids``) for each frame of one video, in order. ``tracker``: a
        name (``bytetrack``) or a ``runtime.tracking.ByteTracker``; fed the detections scoring above its
        ``feed_threshold``. Frames may change size on the way."""
        from .video import track_frames

        yield from track_frames(self, frames, tracker, frame_rate)

    def _segment(self, group: list[Pending], threshold: float) -> Iterator[tuple[Any, np.ndarray, Detections]]:
        raw = self.infer(np.stack([pending.network_input for pending in group]))
        for index, pending in enumerate(group):
            height, width = pending.image.shape[:2]
            yield pending.tag, pending.image, paste_detections(raw, index, height, width, threshold, self.class_names)

    def close(self) -> None:
        """Release the backend's memory outside Python (TensorRT's device and pinned buffers)."""
        self._backend.close()

    def __enter__(self) -> "Segmenter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _load(source: ImageSource) -> np.ndarray:
    return read_image(source) if isinstance(source, (str, os.PathLike)) else source
