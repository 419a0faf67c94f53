"""SSD-style augmentation (training) and plain resizing (evaluation) with ``torchvision.transforms.v2``.

Both take what :class:`yolact.data.CocoDataset` reads, a BGR uint8 image [H, W, 3] (cv2) and the instances
in pixels (``boxes`` BoundingBoxes XYXY, ``masks`` Mask [N, H, W], ``labels`` [N], ``iscrowd`` [N]), and
return the network input [3, S, S] float32 with the instances moved to the S x S canvas.

torchvision's colour ops assume RGB, so the pipelines work in RGB and return to BGR only for the final
:func:`yolact.preprocess.normalize`, which then sees exactly what it sees at inference.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from ..config import YolactConfig
from ..preprocess import normalize


def train_transform(cfg: YolactConfig) -> v2.Compose:
    """Photometric distortion (probability ``cfg.photometric_p``), zoom out (up to ``cfg.zoom_out_max``, 4x in
    the paper, mean fill), random IoU crop (sides down to ``cfg.crop_min_scale``), horizontal mirror, resize
    to ``cfg.max_size`` squared, then drop instances whose box is under ``cfg.min_box_size_px`` pixels.

    A step switched off by its config value is left out rather than run as a no-op."""
    mean_rgb = tuple(reversed(cfg.pixel_mean_bgr))
    steps: list[v2.Transform] = [v2.Lambda(bgr_array_to_rgb_image, np.ndarray)]
    if cfg.photometric_p > 0:
        steps.append(v2.RandomPhotometricDistort(p=cfg.photometric_p))
    if cfg.zoom_out_max > 1:
        steps.append(v2.RandomZoomOut(fill={tv_tensors.Image: mean_rgb, "others": 0}, side_range=(1.0, cfg.zoom_out_max), p=0.5))
    steps += [
        v2.RandomIoUCrop(min_scale=cfg.crop_min_scale),
        v2.RandomHorizontalFlip(p=0.5),
        *_network_input_steps(cfg),
        v2.SanitizeBoundingBoxes(min_size=cfg.min_box_size_px, labels_getter=instance_attributes),
    ]
    return v2.Compose(steps)


def eval_transform(cfg: YolactConfig) -> v2.Compose:
    """Resize to ``cfg.max_size`` squared (bilinear on the float image, aspect ratio not kept) and normalise:
    the same network input as :func:`yolact.preprocess.preprocess`."""
    return v2.Compose([v2.Lambda(bgr_array_to_rgb_image, np.ndarray), *_network_input_steps(cfg)])


def _network_input_steps(cfg: YolactConfig) -> list[v2.Transform]:
    # Resize the float image without antialiasing, as preprocess() does, so training sees inference inputs.
    return [
        v2.ToDtype(torch.float32, scale=False),
        v2.Resize((cfg.max_size, cfg.max_size), antialias=False),
        v2.Lambda(NormalizeRGB(cfg), tv_tensors.Image),
    ]


def bgr_array_to_rgb_image(image_bgr: np.ndarray) -> tv_tensors.Image:
    """cv2 image [H, W, 3] BGR -> tv_tensors.Image [3, H, W] RGB, same dtype."""
    return tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(image_bgr[..., ::-1])).permute(2, 0, 1))


class NormalizeRGB:
    """Float RGB image [3, S, S] -> network input [3, S, S] via :func:`yolact.preprocess.normalize`
    (a class rather than a closure so that DataLoader workers can pickle it)."""

    def __init__(self, cfg: YolactConfig):
        self.cfg = cfg

    def __call__(self, image_rgb: torch.Tensor) -> torch.Tensor:
        return normalize(image_rgb.as_subclass(torch.Tensor).flip(0)[None], self.cfg)[0]


def instance_attributes(sample: tuple[Any, dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
    """What SanitizeBoundingBoxes must filter along with the boxes (it finds the masks itself)."""
    target = sample[1]
    return target["labels"], target["iscrowd"]
