"""Reading image files with one-line errors that name the file. (Atomic writes: ``contract.files``.)"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np


class ImageReadError(ValueError):
    """An image file that is missing or that OpenCV cannot decode; the message is one line naming it."""


def read_bgr_image(path: str | os.PathLike) -> np.ndarray:
    """The image file as BGR uint8 [H, W, 3]."""
    path = Path(path)
    if not path.is_file():  # checked first: OpenCV would print its own warning
        raise ImageReadError(f"{path}: no such file")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageReadError(f"{path}: not a readable image (corrupt or not an image file)")
    return image
