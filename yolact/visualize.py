"""Drawing detections: translucent masks, boxes and ``class score`` labels on a BGR image."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from .fileio import write_bytes_atomic
from .inference import ImageDetections


def instance_color(index: int) -> tuple[int, int, int]:
    """A distinct, stable BGR colour per instance (golden-ratio hue steps)."""
    hue = int((index * 0.618033988749895 % 1.0) * 179)
    hsv = np.uint8([[[hue, 200, 255]]])
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def draw_detections(
    image_bgr: np.ndarray, dets: ImageDetections, class_names: Sequence[str], mask_alpha: float = 0.45
) -> np.ndarray:
    """A copy of ``image_bgr`` [H, W, 3] uint8 with every detection drawn, highest score on top. Labels give
    the class and box score, and the mask score after a slash where re-scoring made it differ."""
    canvas = image_bgr.astype(np.float32)
    for i in reversed(range(len(dets))):  # lowest score first so the best ends up on top
        color = np.array(instance_color(i), dtype=np.float32)
        mask = dets.masks[i]
        canvas[mask] = canvas[mask] * (1 - mask_alpha) + color * mask_alpha
    out = canvas.clip(0, 255).astype(np.uint8)
    font, scale, thickness = cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1
    for i in range(len(dets)):
        color = instance_color(i)
        x1, y1, x2, y2 = (int(v) for v in dets.boxes[i])
        cv2.rectangle(out, (x1, y1), (x2, y2), color, 1)
        label = f"{class_names[dets.classes[i]]} {dets.scores[i]:.2f}"
        if dets.mask_scores[i] != dets.scores[i]:
            label += f"/{dets.mask_scores[i]:.2f}"
        (tw, th), baseline = cv2.getTextSize(label, font, scale, thickness)
        top = max(y1 - th - baseline - 2, 0)
        cv2.rectangle(out, (x1, top), (x1 + tw + 2, top + th + baseline + 2), color, -1)
        cv2.putText(out, label, (x1 + 1, top + th + 1), font, scale, (0, 0, 0), thickness, cv2.LINE_AA)
    return out


def save_png(path, image_bgr: np.ndarray) -> None:
    """Write a BGR uint8 image as PNG, atomically."""
    ok, png = cv2.imencode(".png", image_bgr)
    if not ok:
        raise ValueError(f"{path}: OpenCV could not encode the image as PNG")
    write_bytes_atomic(path, png.tobytes())
