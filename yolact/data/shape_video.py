"""Embedded videos with ground-truth identities: the shapes dataset's look (textured shapes on a textured
background, camera softening and noise) set in motion.

Shapes move, turn, pass in front of and behind each other, and enter and leave the frame. Every frame carries
each visible shape's identity, class, visible mask and the box of that mask; a shape counts as visible by the
dataset's own rule (``MIN_VISIBLE_FRACTION`` of its in-frame area and ``MIN_VISIBLE_AREA`` pixels), so the
model is asked for what it was trained to find. A video is a function of its scenario and seed alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, NamedTuple

import cv2
import numpy as np

from ..config import SHAPES_CLASSES
from .shapes import (
    MIN_VISIBLE_AREA,
    MIN_VISIBLE_FRACTION,
    _finish,
    _texture,
    polygon_outline,
    polygon_points,
)


@dataclass(frozen=True)
class VideoScenario:
    """How a video moves. ``shapes``: how many take part over the whole video; ``entering``: the fraction
    of them that cross the frame from one edge to another, appearing and leaving mid-video (the others
    bounce around inside it the whole time); ``crossing``: the fraction whose path aims through the middle
    of the frame, where they pass each other; ``speed`` px/frame; ``spin`` radians/frame at most; ``radius``
    circumradius range in pixels."""

    name: str
    frames: int = 300
    height: int = 360
    width: int = 480
    shapes: int = 8
    entering: float = 0.4
    crossing: float = 0.3
    speed: tuple[float, float] = (1.0, 3.0)
    spin: float = 0.03
    radius: tuple[float, float] = (22.0, 48.0)


MODERATE = VideoScenario("moderate")
# Most identities (64% with seed 1) are at some point less than half visible behind another shape.
OCCLUDED = VideoScenario("occluded", shapes=14, entering=0.3, crossing=0.9, speed=(1.5, 3.5), radius=(28.0, 60.0))
SCENARIOS = {scenario.name: scenario for scenario in (MODERATE, OCCLUDED)}


@dataclass(frozen=True)
class MovingShape:
    """One shape's whole life: identity, class, size and outline, texture, depth (higher is nearer),
    the frames it exists in [first, last], its position at ``first`` and velocity, its turn and spin."""

    identity: int
    label: int
    radius: float
    angles: np.ndarray
    radii: np.ndarray
    inner: float  # a ring's hole, as a fraction of its radius
    texture: np.ndarray
    depth: float
    first: int
    last: int
    start: np.ndarray
    velocity: np.ndarray
    rotation: float
    spin: float

    def pose(self, frame: int, height: int, width: int) -> tuple[float, float, float]:
        """(cx, cy, rotation) at ``frame``; a shape that lives the whole video bounces off the frame's
        edges (reflected as a triangle wave), one that crosses it flies straight."""
        steps = frame - self.first
        position = self.start + steps * self.velocity
        if self.first == 0 and self.last == -1:
            low = np.array([self.radius, self.radius])
            span = np.array([width, height]) - 2 * self.radius
            folded = np.mod(position - low, 2 * span)
            position = low + np.where(folded > span, 2 * span - folded, folded)
        return float(position[0]), float(position[1]), self.rotation + steps * self.spin

    def full_mask(self, frame: int, height: int, width: int) -> np.ndarray:
        """Its unoccluded mask [H, W] uint8 at ``frame``, clipped to the frame."""
        cx, cy, rotation = self.pose(frame, height, width)
        mask = np.zeros((height, width), dtype=np.uint8)
        name = SHAPES_CLASSES[self.label]
        if name in ("circle", "ring"):
            cv2.circle(mask, (round(cx), round(cy)), round(self.radius), 1, thickness=-1)
            if name == "ring":
                cv2.circle(mask, (round(cx), round(cy)), round(self.radius * self.inner), 0, thickness=-1)
        else:
            cv2.fillPoly(mask, [polygon_points(self.angles + rotation, self.radius * self.radii, cx, cy)], 1)
        return mask

    def alive(self, frame: int) -> bool:
        return self.first <= frame and (self.last == -1 or frame <= self.last)


class VideoFrame(NamedTuple):
    """One frame: BGR uint8 image [H, W, 3] and its ground truth, N visible shapes: identities [N] int64
    (0-based), labels [N] int64 (class ids), visible masks [N, H, W] bool, boxes [N, 4] int64 x1y1x2y2
    (right and bottom exclusive) of those masks, and each one's visible fraction [N] float64."""

    image: np.ndarray
    identities: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    boxes: np.ndarray
    visible_fraction: np.ndarray


def plan_shapes(scenario: VideoScenario, rng: np.random.Generator) -> list[MovingShape]:
    """The shapes of a video, their paths drawn from ``rng``."""
    shapes = []
    centre = np.array([scenario.width, scenario.height]) / 2
    for identity in range(scenario.shapes):
        label = int(rng.integers(len(SHAPES_CLASSES)))
        radius = float(np.exp(rng.uniform(*np.log(scenario.radius))))
        name = SHAPES_CLASSES[label]
        angles, radii = polygon_outline(rng, name) if name not in ("circle", "ring") else (np.zeros(0), np.zeros(0))
        side = int(2 * radius) + 3
        speed = rng.uniform(*scenario.speed)
        entering = rng.random() < scenario.entering
        if entering:
            start, velocity, first, last = _crossing_path(rng, scenario, radius, speed, centre)
        else:
            start = rng.uniform([radius, radius], [scenario.width - radius, scenario.height - radius])
            aim = (
                centre + rng.normal(0, 20, 2)
                if rng.random() < scenario.crossing
                else rng.uniform([0, 0], [scenario.width, scenario.height])
            )
            direction = aim - start if np.linalg.norm(aim - start) > 1 else rng.normal(size=2)
            velocity = direction / np.linalg.norm(direction) * speed
            first, last = 0, -1
        shapes.append(
            MovingShape(
                identity=identity,
                label=label,
                radius=radius,
                angles=angles,
                radii=radii,
                inner=float(rng.uniform(0.45, 0.7)),
                texture=_texture(rng, side, side),
                depth=float(rng.random()),
                first=first,
                last=last,
                start=start,
                velocity=velocity,
                rotation=float(rng.uniform(0, 2 * np.pi)),
                spin=float(rng.uniform(-scenario.spin, scenario.spin)),
            )
        )
    return shapes


def _crossing_path(
    rng: np.random.Generator, scenario: VideoScenario, radius: float, speed: float, centre: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """A straight path from outside one edge, through the frame (by its middle when crossing), out again:
    (start position, velocity, first frame, last frame)."""
    angle = rng.uniform(0, 2 * np.pi)
    outward = np.array([np.cos(angle), np.sin(angle)])
    reach = np.hypot(scenario.width, scenario.height) / 2 + radius
    spread = 0.15 if rng.random() < scenario.crossing else 0.6
    through = centre + rng.uniform(-spread, spread, 2) * np.array([scenario.width, scenario.height])
    start = through + outward * reach
    duration = int(2 * reach / speed)
    first = int(rng.integers(0, max(1, scenario.frames - duration // 2)))
    return start, -outward * speed, first, first + duration


def render_video(scenario: VideoScenario, seed: int = 0) -> Iterator[VideoFrame]:
    """The frames of ``scenario`` drawn from ``seed``, one at a time (a 300-frame video's masks would not
    fit comfortably in memory at once)."""
    rng = np.random.default_rng([seed, 7919])
    background = _texture(rng, scenario.height, scenario.width)
    shapes = sorted(plan_shapes(scenario, rng), key=lambda shape: shape.depth)  # painted back to front
    for frame in range(scenario.frames):
        yield _render_frame(scenario, background, shapes, frame, np.random.default_rng([seed, 104729, frame]))


def _render_frame(
    scenario: VideoScenario, background: np.ndarray, shapes: list[MovingShape], frame: int, rng: np.random.Generator
) -> VideoFrame:
    height, width = scenario.height, scenario.width
    image = background.copy()
    owner = np.full((height, width), -1, dtype=np.int16)
    present, full_areas = [], []
    for shape in shapes:
        if not shape.alive(frame):
            continue
        mask = shape.full_mask(frame, height, width)
        area = cv2.countNonZero(mask)
        if area == 0:
            continue
        _paint_texture(image, mask, shape, frame)
        owner[mask.astype(bool)] = len(present)
        present.append(shape)
        full_areas.append(area)
    visible = owner[None] == np.arange(len(present), dtype=np.int16)[:, None, None]
    fractions = visible.sum(axis=(1, 2)) / np.maximum(full_areas, 1) if present else np.zeros(0)
    areas = visible.sum(axis=(1, 2))
    keep = (fractions >= MIN_VISIBLE_FRACTION) & (areas >= MIN_VISIBLE_AREA)
    kept = [shape for shape, k in zip(present, keep) if k]
    boxes = np.array([_mask_box(mask) for mask in visible[keep]], dtype=np.int64).reshape(-1, 4)
    return VideoFrame(
        image=_finish(rng, image),
        identities=np.array([shape.identity for shape in kept], dtype=np.int64),
        labels=np.array([shape.label for shape in kept], dtype=np.int64),
        masks=visible[keep],
        boxes=boxes,
        visible_fraction=fractions[keep],
    )


def _paint_texture(image: np.ndarray, mask: np.ndarray, shape: MovingShape, frame: int) -> None:
    """The shape's own texture (it travels with the shape) over its mask's pixels, in place."""
    x0, y0, w, h = cv2.boundingRect(mask)
    cx, cy, _ = shape.pose(frame, *image.shape[:2])
    side = shape.texture.shape[0]
    left, top = round(cx) - side // 2, round(cy) - side // 2
    window = np.zeros((h, w, 3), dtype=np.uint8)
    # The texture square covers the shape; copy its part inside the mask's bounding rectangle.
    sx0, sy0 = max(x0 - left, 0), max(y0 - top, 0)
    sx1, sy1 = min(x0 + w - left, side), min(y0 + h - top, side)
    if sx1 > sx0 and sy1 > sy0:
        window[sy0 + top - y0 : sy1 + top - y0, sx0 + left - x0 : sx1 + left - x0] = shape.texture[sy0:sy1, sx0:sx1]
    np.copyto(image[y0 : y0 + h, x0 : x0 + w], window, where=mask[y0 : y0 + h, x0 : x0 + w, None].astype(bool))


def _mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    x, y, w, h = cv2.boundingRect(mask.view(np.uint8))
    return x, y, x + w, y + h


def write_video(path: str, images: Iterable[np.ndarray], fps: float = 30.0) -> None:
    """BGR uint8 images of one size as an ``mp4v`` MP4 at ``path``."""
    writer = None
    try:
        for image in images:
            if writer is None:
                writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, image.shape[1::-1])
                if not writer.isOpened():
                    raise OSError(f"{path}: OpenCV cannot write an mp4v video there")
            writer.write(image)
    finally:
        if writer is not None:
            writer.release()
