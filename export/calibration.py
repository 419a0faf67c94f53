"""Calibration images for INT8: a folder of images, or by default the embedded dataset's train split."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from yolact.fileio import ImageReadError, read_bgr_image

from .onnx_export import ExportError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
DEFAULT_NUM_IMAGES = 64


def default_calibration_dir() -> Path:
    """The embedded shapes dataset's train split (generated on first use)."""
    try:
        from yolact.data import ensure_shapes_dataset

        return Path(ensure_shapes_dataset().train_images)
    except Exception as exc:  # no dataset module, generation failed, unwritable cache: all mean "no images"
        raise ExportError(f"--int8 needs calibration images: pass --calib DIR (embedded dataset unavailable: {exc})") from None


def calibration_files(folder: str | os.PathLike | None, limit: int = DEFAULT_NUM_IMAGES) -> list[Path]:
    """Up to ``limit`` image files of ``folder`` (sorted, so runs are reproducible)."""
    folder = Path(folder) if folder is not None else default_calibration_dir()
    if not folder.is_dir():
        raise ExportError(f"--calib {folder}: not a folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not files:
        raise ExportError(f"--calib {folder}: holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def read_bgr(path: Path, size: int | None = None) -> np.ndarray:
    """uint8 BGR [H, W, 3], resized to ``size`` x ``size`` when given (fixed-shape calibration batches)."""
    try:
        image = read_bgr_image(path)
    except ImageReadError as exc:
        raise ExportError(str(exc)) from None
    if size is not None:
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    return image


def calibration_batches(files: list[Path], batch_size: int = 1, size: int | None = None) -> Iterator[np.ndarray]:
    """uint8 BGR batches [b, H, W, 3]; images of one batch must share a size, so give ``size`` when
    ``batch_size`` > 1."""
    for start in range(0, len(files), batch_size):
        yield np.stack([read_bgr(p, size) for p in files[start : start + batch_size]])
