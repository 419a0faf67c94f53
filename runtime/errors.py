"""The runtime's exceptions. Every message is one line that names the culprit (a file, an option, an image)."""

from __future__ import annotations


class SegmenterError(Exception):
    """Base of the runtime's errors."""


class ModelError(SegmenterError):
    """The model cannot be run as asked: a missing, corrupt or foreign model file, a backend that is not
    installed, or a backend, device, precision, thread count or batch size that the model or backend does
    not take."""


class ImageError(SegmenterError):
    """An input image that cannot be read or is not an HxWx3 uint8 BGR array."""


def one_line(exc: BaseException, limit: int = 300) -> str:
    """The informative line of a library's exception: onnxruntime and OpenVINO messages span several lines
    and OpenVINO's open with "Exception from <source file>" lines."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith("Exception from ")]
    text = (useful or lines or [type(exc).__name__])[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."
