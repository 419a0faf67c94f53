"""Reading and checking input images."""

from __future__ import annotations

import os

import cv2
import numpy as np

from .errors import ImageError


def read_image(path: str | os.PathLike) -> np.ndarray:
    """The file as a BGR uint8 array [H, W, 3] (OpenCV converts grey, alpha and 16-bit images). The bytes
    are read here rather than by cv2.imread, so that a missing or unreadable file is told apart from one
    that is not an image."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageError(f"{path}: {exc.strerror or exc}") from None
    return decode_image(data, path)


def decode_image(data: bytes | np.ndarray, name: str | os.PathLike) -> np.ndarray:
    """An encoded image (PNG, JPEG, ... bytes) as a BGR uint8 array [H, W, 3]; ImageError naming ``name``
    for no bytes or bytes OpenCV cannot decode."""
    encoded = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    if not encoded.size:
        raise ImageError(f"{name}: empty file")
    try:
        image = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    except cv2.error:  # OpenCV raises rather than returns None for some damaged or over-large images
        image = None
    if image is None:
        raise ImageError(f"{name}: not an image OpenCV can read")
    return image


def checked_image(image: np.ndarray, name: str) -> np.ndarray:
    """``image`` if it is an HxWx3 uint8 array, else an ImageError naming it."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        described = f"shape {list(image.shape)} {image.dtype}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ImageError(f"{name}: expected an HxWx3 uint8 BGR array, got {described}")
    return image
