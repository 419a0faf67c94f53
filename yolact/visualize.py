"""Drawing detections (translucent masks, boxes and ``class score`` labels on a BGR image) and prototypes."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from contract.files import write_bytes
from .inference import ImageDetections


def instance_color(index: int) -> tuple[int, int, int]:
    """A distinct, stable BGR colour per instance (golden-ratio hue steps)."""
    hue = int((index * 0.618033988749895 % 1.0) * 179)
    hsv = np.uint8([[[hue, 200, 255]]])
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def draw_detections(image_bgr: np.ndarray, dets: ImageDetections, class_names: Sequence[str], mask_alpha: float = 0.45) -> np.ndarray:
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
        label = f"{class_names[dets.class_ids[i]]} {dets.scores[i]:.2f}"
        if dets.mask_scores[i] != dets.scores[i]:
            label += f"/{dets.mask_scores[i]:.2f}"
        (tw, th), baseline = cv2.getTextSize(label, font, scale, thickness)
        top = max(y1 - th - baseline - 2, 0)
        cv2.rectangle(out, (x1, top), (x1 + tw + 2, top + th + baseline + 2), color, -1)
        cv2.putText(out, label, (x1 + 1, top + th + 1), font, scale, (0, 0, 0), thickness, cv2.LINE_AA)
    return out


def prototype_grid(protos: np.ndarray, columns: int = 8, tile: int = 96) -> np.ndarray:
    """The k prototypes of one image [Hp, Wp, k] as a BGR uint8 grid of ``tile``-pixel heat maps, ``columns``
    to a row, in the style of the paper's Figure 5.

    Each prototype is scaled by its own maximum (they differ in range by orders of magnitude, and a
    prototype's meaning is where it fires, not how strongly), and labelled with its index and that maximum.
    """
    height, width, k = protos.shape
    rows = -(-k // columns)
    gap = 2
    grid = np.full((rows * (tile + gap) + gap, columns * (tile + gap) + gap, 3), 255, dtype=np.uint8)
    for i in range(k):
        plane = protos[..., i]
        peak = float(plane.max())
        scaled = (plane / peak * 255).astype(np.uint8) if peak > 0 else np.zeros_like(plane, dtype=np.uint8)
        heat = cv2.applyColorMap(cv2.resize(scaled, (tile, tile), interpolation=cv2.INTER_NEAREST), cv2.COLORMAP_VIRIDIS)
        cv2.putText(heat, f"{i} max {peak:.2g}", (3, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (255, 255, 255), 1, cv2.LINE_AA)
        top, left = gap + (i // columns) * (tile + gap), gap + (i % columns) * (tile + gap)
        grid[top : top + tile, left : left + tile] = heat
    return grid


def save_png(path, image_bgr: np.ndarray) -> None:
    """Write a BGR uint8 image as PNG, atomically."""
    ok, png = cv2.imencode(".png", image_bgr)
    if not ok:
        raise ValueError(f"{path}: OpenCV could not encode the image as PNG")
    write_bytes(path, png.tobytes())
