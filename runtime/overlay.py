"""Detections drawn over an image with OpenCV: translucent masks, boxes, ``class score`` labels."""

from __future__ import annotations

import cv2
import numpy as np

from .detections import Detections

MASK_OPACITY = 0.45
FONT, FONT_SCALE = cv2.FONT_HERSHEY_SIMPLEX, 0.45


def instance_colors(count: int) -> np.ndarray:
    """[count, 3] uint8 BGR colours whose hues step by the golden ratio, so neighbours in score order
    differ."""
    return key_colors(np.arange(count))


def key_colors(keys: np.ndarray) -> np.ndarray:
    """[len(keys), 3] uint8 BGR colours, one per integer key (a track id keeps its colour over frames)."""
    count = len(keys)
    hues = (np.asarray(keys, dtype=np.float64) * 0.618033988749895 % 1.0 * 179).astype(np.uint8)
    hsv = np.stack([hues, np.full(count, 200, np.uint8), np.full(count, 255, np.uint8)], axis=-1)
    return cv2.cvtColor(hsv[None], cv2.COLOR_HSV2BGR)[0]


def draw_overlay(
    image: np.ndarray, detections: Detections, labels: list[str] | None = None, color_keys: np.ndarray | None = None
) -> np.ndarray:
    """A copy of the BGR ``image`` with the detections drawn; where masks overlap, the best score shows. Each
    mask is blended over its crop alone. ``labels``: one per detection (default ``class score``);
    ``color_keys``: an integer per detection that picks its colour (default its rank)."""
    if not len(detections):
        return image.copy()
    colors = instance_colors(len(detections)) if color_keys is None else key_colors(color_keys)
    out = image.copy()
    for i in reversed(range(len(detections))):  # best score painted last, so it ends on top
        crop = detections.crop(i)
        pixels = image[crop.region][crop.mask]
        if pixels.size:  # cv2.addWeighted answers None for no pixels
            out[crop.region][crop.mask] = cv2.addWeighted(pixels, 1 - MASK_OPACITY, np.full_like(pixels, colors[i]), MASK_OPACITY, 0)
    for i in range(len(detections)):
        color = tuple(int(c) for c in colors[i])
        x1, y1, x2, y2 = (int(v) for v in detections.boxes[i])
        cv2.rectangle(out, (x1, y1), (x2, y2), color, 1)
        label = labels[i] if labels is not None else f"{detections.class_names[i]} {detections.scores[i]:.2f}"
        (text_width, text_height), baseline = cv2.getTextSize(label, FONT, FONT_SCALE, 1)
        top = max(y1 - text_height - baseline - 2, 0)
        cv2.rectangle(out, (x1, top), (x1 + text_width + 2, top + text_height + baseline + 2), color, -1)
        cv2.putText(out, label, (x1 + 1, top + text_height + 1), FONT, FONT_SCALE, (0, 0, 0), 1, cv2.LINE_AA)
    return out
