"""Input preprocessing exactly as the authors' ``FastBaseTransform``.

BGR uint8 -> float -> bilinear resize to ``max_size`` x ``max_size`` (aspect ratio not kept, the float
image is interpolated) -> normalisation -> RGB channel order, NCHW.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import YolactConfig


def normalize(images_bgr: torch.Tensor, cfg: YolactConfig) -> torch.Tensor:
    """Float BGR images in [0, 255], [B, 3, H, W] -> normalised RGB [B, 3, H, W]."""
    if cfg.normalization == "mean_std":
        mean = images_bgr.new_tensor(cfg.pixel_mean_bgr).view(1, 3, 1, 1)
        std = images_bgr.new_tensor(cfg.pixel_std_bgr).view(1, 3, 1, 1)
        images_bgr = (images_bgr - mean) / std
    elif cfg.normalization == "unit":
        images_bgr = images_bgr / 255
    else:
        raise ValueError(f"unknown normalization {cfg.normalization!r} in config {cfg.name!r}")
    return images_bgr.flip(1)


def preprocess(images_bgr: torch.Tensor, cfg: YolactConfig) -> torch.Tensor:
    """uint8 (or float) BGR images [B, H, W, 3] of one size -> network input [B, 3, S, S]."""
    x = images_bgr.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(cfg.max_size, cfg.max_size), mode="bilinear", align_corners=False)
    return normalize(x, cfg)
