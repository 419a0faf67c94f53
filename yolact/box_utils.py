"""Box coding and geometry, batched over any leading dimensions.

Boxes are ``(x1, y1, x2, y2)`` ("point form") or ``(cx, cy, w, h)`` ("center-size"), normalised to [0, 1]
by the network input size unless a function says otherwise.
"""

from __future__ import annotations

import torch

VARIANCES = (0.1, 0.2)


def point_form(boxes: torch.Tensor) -> torch.Tensor:
    """[..., 4] (cx, cy, w, h) -> [..., 4] (x1, y1, x2, y2)."""
    return torch.cat((boxes[..., :2] - boxes[..., 2:] / 2, boxes[..., :2] + boxes[..., 2:] / 2), dim=-1)


def center_size(boxes: torch.Tensor) -> torch.Tensor:
    """[..., 4] (x1, y1, x2, y2) -> [..., 4] (cx, cy, w, h)."""
    return torch.cat(((boxes[..., 2:] + boxes[..., :2]) / 2, boxes[..., 2:] - boxes[..., :2]), dim=-1)


def box_iou(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU (areas without the +1 pixel convention): [..., A, 4] x [..., B, 4] -> [..., A, B]."""
    inter = _intersection(boxes_a, boxes_b)
    area_a = _area(boxes_a).unsqueeze(-1)
    area_b = _area(boxes_b).unsqueeze(-2)
    return inter / (area_a + area_b - inter)


def box_ioa(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """Intersection over the area of ``boxes_a`` (crowd matching): [..., A, 4] x [..., B, 4] -> [..., A, B]."""
    return _intersection(boxes_a, boxes_b) / _area(boxes_a).unsqueeze(-1)


def _area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def _intersection(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    max_xy = torch.minimum(boxes_a[..., :, None, 2:], boxes_b[..., None, :, 2:])
    min_xy = torch.maximum(boxes_a[..., :, None, :2], boxes_b[..., None, :, :2])
    return (max_xy - min_xy).clamp(min=0).prod(dim=-1)


def decode(loc: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """Regression offsets -> point-form boxes.

    loc [..., P, 4], priors [P, 4] center-size -> [..., P, 4]. x2 is computed as x1 + w, not cx + w/2, as the
    authors do (the two differ in the last float bit).
    """
    centers = priors[..., :2] + loc[..., :2] * VARIANCES[0] * priors[..., 2:]
    sizes = priors[..., 2:] * torch.exp(loc[..., 2:] * VARIANCES[1])
    top_left = centers - sizes / 2
    return torch.cat((top_left, top_left + sizes), dim=-1)


def encode(matched: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """Point-form ground-truth boxes matched to priors -> regression targets (inverse of :func:`decode`).

    matched [..., P, 4], priors [P, 4] -> [..., P, 4].
    """
    centers = ((matched[..., :2] + matched[..., 2:]) / 2 - priors[..., :2]) / (VARIANCES[0] * priors[..., 2:])
    sizes = torch.log((matched[..., 2:] - matched[..., :2]) / priors[..., 2:]) / VARIANCES[1]
    return torch.cat((centers, sizes), dim=-1)


def sanitize_coordinates(coord1: torch.Tensor, coord2: torch.Tensor, size: int, padding: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised coordinates -> ordered absolute coordinates, widened by ``padding`` and clamped to [0, size]."""
    coord1 = coord1 * size
    coord2 = coord2 * size
    low = torch.minimum(coord1, coord2)
    high = torch.maximum(coord1, coord2)
    return (low - padding).clamp(min=0), (high + padding).clamp(max=size)


def crop(masks: torch.Tensor, boxes: torch.Tensor, padding: int = 1) -> torch.Tensor:
    """Zero every mask outside its box, widened by ``padding`` mask pixels (the authors' default is 1).

    masks [..., N, H, W], boxes [..., N, 4] normalised point form -> [..., N, H, W]. A pixel column ``c`` is
    kept where ``x1 <= c < x2`` after widening and clamping.
    """
    height, width = masks.shape[-2:]
    x1, x2 = sanitize_coordinates(boxes[..., 0], boxes[..., 2], width, padding)
    y1, y2 = sanitize_coordinates(boxes[..., 1], boxes[..., 3], height, padding)
    cols = torch.arange(width, device=masks.device, dtype=x1.dtype)
    rows = torch.arange(height, device=masks.device, dtype=y1.dtype)
    inside_x = (cols >= x1[..., None]) & (cols < x2[..., None])  # [..., N, W]
    inside_y = (rows >= y1[..., None]) & (rows < y2[..., None])  # [..., N, H]
    inside = inside_y[..., :, None] & inside_x[..., None, :]
    return masks * inside.to(masks.dtype)
