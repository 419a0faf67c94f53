"""Anchor boxes ("priors"), laid out exactly as the authors' ``make_priors``."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from .config import YolactConfig


# torch.compile cannot trace the cached NumPy array ("Expected np.nditer base"): the priors are made eagerly,
# outside the compiled graph (one graph break; they depend on the feature map sizes alone).
@torch.compiler.disable
def make_priors(cfg: YolactConfig, level_sizes: tuple[tuple[int, int], ...]) -> torch.Tensor:
    """Priors for feature maps of the given (height, width) per FPN level, [P, 4] center-size float32.

    Cells run row-major (y outer, x inner), then inside a cell the scales of the level
    (``s * 2 ** (j / scales_per_octave)``), then aspect ratios, matching how the head's outputs are
    flattened. Sizes are divided by ``cfg.max_size``, not by the actual input size; with
    ``use_square_anchors`` (every v1 config) the height equals the width.
    """
    priors = _make_priors(level_sizes, cfg.pred_scales, cfg.scales_per_octave, cfg.aspect_ratios, cfg.max_size, cfg.use_square_anchors)
    return torch.tensor(priors)


@lru_cache(maxsize=16)
def _make_priors(
    level_sizes: tuple[tuple[int, int], ...],
    scales: tuple[int, ...],
    scales_per_octave: int,
    aspect_ratios: tuple[float, ...],
    max_size: int,
    square: bool,
) -> np.ndarray:
    # NumPy, not torch: a cached tensor made while torch.export traces would be a FakeTensor and poison
    # every later call.
    if len(scales) != len(level_sizes):
        raise ValueError(f"{len(scales)} prior scales for {len(level_sizes)} feature levels")
    levels = []
    for (height, width), scale in zip(level_sizes, scales):
        # Float64 like the authors' Python floats; cast once at the end.
        cy, cx = np.meshgrid(
            (np.arange(height, dtype=np.float64) + 0.5) / height,
            (np.arange(width, dtype=np.float64) + 0.5) / width,
            indexing="ij",
        )
        # Scale outer, aspect ratio inner, as the authors' loops run; Python floats like theirs.
        level_scales = np.array([scale * 2 ** (j / scales_per_octave) for j in range(scales_per_octave)])
        ratios = np.array([math.sqrt(r) for r in aspect_ratios], dtype=np.float64)
        w = (level_scales[:, None] * ratios[None, :]).reshape(-1) / max_size
        h = w if square else (level_scales[:, None] / ratios[None, :]).reshape(-1) / max_size
        num_cells, per_cell = height * width, len(w)
        centers = np.broadcast_to(np.stack((cx, cy), axis=-1).reshape(num_cells, 1, 2), (num_cells, per_cell, 2))
        sizes = np.broadcast_to(np.stack((w, h), axis=-1).reshape(1, per_cell, 2), (num_cells, per_cell, 2))
        levels.append(np.concatenate((centers, sizes), axis=-1).reshape(-1, 4))
    priors = np.concatenate(levels).astype(np.float32)
    priors.flags.writeable = False  # shared by every caller through the cache
    return priors


def feature_sizes(cfg: YolactConfig, input_size: int | None = None) -> tuple[tuple[int, int], ...]:
    """(height, width) of P3..P7 for a square input (default ``cfg.max_size``), without running the net."""
    size = cfg.max_size if input_size is None else input_size

    def halve(n: int) -> int:  # a stride-2 3x3 convolution (or pooling) with padding 1
        return (n - 1) // 2 + 1

    if cfg.backbone == "resnet":
        size = halve(halve(size))  # the 7x7 stem conv and the max-pool
        stages_to_c3 = 1
    else:
        stages_to_c3 = 3  # DarkNet's stem keeps the size; each of its stages halves it
    for _ in range(stages_to_c3):
        size = halve(size)
    sizes = [size]
    for _ in range(4):  # C4, C5, then the two stride-2 FPN convolutions
        size = halve(size)
        sizes.append(size)
    return tuple((s, s) for s in sizes)
