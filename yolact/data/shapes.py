"""The embedded dataset: procedurally generated coloured shapes, written once as a real COCO dataset.

Every image is a function of (seed, split, index) only, so a dataset is reproducible from its seed, and a
small dataset is a prefix of a larger one with the same seed. Shapes are painted back to front; the
annotation of each is the part still visible at the end, so occluded and truncated instances come out as
they would in a hand-labelled dataset.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from tqdm import tqdm

from ..config import SHAPES_CLASSES
from .coco import DatasetError

GENERATOR = "shapes-v1"
DEFAULT_NUM_TRAIN = 1800
DEFAULT_NUM_VAL = 200

IMAGE_SIDE_RANGE = (256, 400)  # each side drawn independently: images are rarely square
SHAPES_PER_IMAGE = (3, 10)  # [low, high)
RADIUS_RANGE = (12.0, 75.0)  # circumradius in pixels, drawn log-uniformly
SAME_CLASS_NEIGHBOUR_PROB = 0.4  # chance that a shape is placed touching/overlapping one of its own class
MIN_VISIBLE_FRACTION = 0.3
MIN_VISIBLE_AREA = 60  # pixels
JPEG_QUALITY = 92

_SPLIT_CODES = {"train": 0, "val": 1}


@dataclass(frozen=True)
class ShapesDataset:
    """Where the splits of a generated shapes dataset live."""

    root: Path
    train_images: Path
    train_annotations: Path
    val_images: Path
    val_annotations: Path
    class_names: tuple[str, ...] = SHAPES_CLASSES

    @classmethod
    def at(cls, root: Path) -> "ShapesDataset":
        return cls(
            root=root,
            train_images=root / "train",
            train_annotations=root / "annotations" / "instances_train.json",
            val_images=root / "val",
            val_annotations=root / "annotations" / "instances_val.json",
        )


def default_root(seed: int, num_train: int = DEFAULT_NUM_TRAIN, num_val: int = DEFAULT_NUM_VAL) -> Path:
    """``$YOLACT_DATA_DIR/<name>`` or ``~/.cache/yolact/<name>``; the name carries the seed and, when they
    differ from the defaults, the split sizes, so differently sized datasets never share a folder."""
    base = Path(os.environ.get("YOLACT_DATA_DIR") or Path.home() / ".cache" / "yolact")
    name = f"{GENERATOR}-seed{seed}"
    if (num_train, num_val) != (DEFAULT_NUM_TRAIN, DEFAULT_NUM_VAL):
        name += f"-train{num_train}-val{num_val}"
    return base / name


def ensure_shapes_dataset(
    root: Path | None = None,
    seed: int = 0,
    num_train: int = DEFAULT_NUM_TRAIN,
    num_val: int = DEFAULT_NUM_VAL,
    progress: bool | None = None,
) -> ShapesDataset:
    """The shapes dataset at ``root`` (default :func:`default_root`), generated there first if absent.

    Generation happens in a temporary folder beside ``root`` that is renamed onto it when complete, so an
    interrupted run leaves nothing behind and concurrent callers end up sharing one finished copy.
    ``progress=None`` shows a bar only on a terminal.
    """
    root = Path(root) if root is not None else default_root(seed, num_train, num_val)
    manifest = {"generator": GENERATOR, "seed": seed, "num_train": num_train, "num_val": num_val}
    if not root.exists():
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".tmp", dir=root.parent))
        try:
            _write_dataset(tmp, manifest, progress)
            tmp.chmod(0o755)  # mkdtemp's 0700 would keep a shared $YOLACT_DATA_DIR private
            os.rename(tmp, root)
        except OSError:
            if not root.exists():  # not merely another process finishing first
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    _check_manifest(root, manifest)
    return ShapesDataset.at(root)


def _check_manifest(root: Path, expected: dict) -> None:
    try:
        found = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        raise DatasetError(f"{root}: exists but is not a generated shapes dataset (no manifest.json)") from None
    if found != expected:
        raise DatasetError(f"{root}: holds a shapes dataset generated with {found}, not {expected}; delete it or pick another root")


def _write_dataset(root: Path, manifest: dict, progress: bool | None) -> None:
    (root / "annotations").mkdir()
    total = manifest["num_train"] + manifest["num_val"]
    disable = None if progress is None else not progress  # tqdm's None: only on a terminal
    with tqdm(total=total, desc="generating shapes dataset", unit="img", disable=disable) as bar:
        for split in ("train", "val"):
            coco = _write_split(root, split, manifest["seed"], manifest[f"num_{split}"], bar)
            (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))
    (root / "manifest.json").write_text(json.dumps(manifest))


def _write_split(root: Path, split: str, seed: int, num_images: int, bar: tqdm) -> dict:
    """Render and write the images of one split; its COCO annotation dict."""
    image_dir = root / split
    image_dir.mkdir()
    images, annotations = [], []
    for index in range(num_images):
        rng = np.random.default_rng([seed, _SPLIT_CODES[split], index])
        image, masks, labels = render_image(rng)
        file_name = f"{index:06d}.jpg"
        if not cv2.imwrite(str(image_dir / file_name), image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
            raise OSError(f"{image_dir / file_name}: could not be written")
        image_id = index + 1  # COCO ids start at 1; pycocotools treats 0 as "no match"
        images.append({"id": image_id, "file_name": file_name, "height": image.shape[0], "width": image.shape[1]})
        annotations.extend(_annotations(masks, labels, image_id, first_id=len(annotations) + 1))
        bar.update()
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(SHAPES_CLASSES)]
    info = {"description": f"YOLACT procedural shapes ({GENERATOR}), {split} split", "seed": seed}
    return {"info": info, "licenses": [], "images": images, "annotations": annotations, "categories": categories}


def _annotations(masks: np.ndarray, labels: np.ndarray, image_id: int, first_id: int) -> list[dict]:
    """COCO annotations (RLE segmentation, bbox = the mask's bounding box) for masks [N, H, W] uint8."""
    if len(masks) == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0)))
    boxes = mask_utils.toBbox(rles)
    areas = mask_utils.area(rles)
    return [
        {
            "id": first_id + i,
            "image_id": image_id,
            "category_id": int(labels[i]) + 1,
            "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
            "area": int(areas[i]),
            "bbox": [float(v) for v in boxes[i]],
            "iscrowd": 0,
        }
        for i, rle in enumerate(rles)
    ]


def render_image(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One synthetic scene: BGR uint8 image [H, W, 3], visible masks [N, H, W] uint8 {0, 1} and 0-based
    labels [N] int64 of the instances that stay visible enough to annotate, in painting order."""
    height, width = (int(v) for v in rng.integers(IMAGE_SIDE_RANGE[0], IMAGE_SIDE_RANGE[1] + 1, size=2))
    image = _texture(rng, height, width)
    owner = np.full((height, width), -1, dtype=np.int16)  # index of the shape painted last at each pixel
    placed: list[tuple[int, float, float, float]] = []  # (label, cx, cy, radius)
    full_areas = []
    for k in range(int(rng.integers(*SHAPES_PER_IMAGE))):
        label, cx, cy, radius = _place_shape(rng, placed, height, width)
        mask = _shape_mask(rng, label, cx, cy, radius, height, width)
        _paint(rng, image, mask)
        owner[mask.astype(bool)] = k
        placed.append((label, cx, cy, radius))
        full_areas.append(cv2.countNonZero(mask))
    image = _finish(rng, image)
    visible = owner[None] == np.arange(len(placed), dtype=np.int16)[:, None, None]
    visible_areas = visible.sum(axis=(1, 2))
    keep = (visible_areas >= MIN_VISIBLE_FRACTION * np.maximum(full_areas, 1)) & (visible_areas >= MIN_VISIBLE_AREA)
    labels = np.array([p[0] for p in placed], dtype=np.int64)
    return image, visible[keep].astype(np.uint8), labels[keep]


def _place_shape(
    rng: np.random.Generator, placed: list[tuple[int, float, float, float]], height: int, width: int
) -> tuple[int, float, float, float]:
    """Class, centre and circumradius of the next shape: either free, or right next to (touching or
    overlapping) an earlier shape of the same class, so a model must learn to separate instances."""
    radius = float(np.exp(rng.uniform(np.log(RADIUS_RANGE[0]), np.log(RADIUS_RANGE[1]))))
    if placed and rng.random() < SAME_CLASS_NEIGHBOUR_PROB:
        label, nx, ny, neighbour_radius = placed[int(rng.integers(len(placed)))]
        radius = neighbour_radius * rng.uniform(0.7, 1.3)
        angle = rng.uniform(0, 2 * np.pi)
        distance = (radius + neighbour_radius) * rng.uniform(0.45, 0.85)
        return label, nx + distance * np.cos(angle), ny + distance * np.sin(angle), radius
    label = int(rng.integers(len(SHAPES_CLASSES)))
    # A margin keeps most shapes inside the image; those near it still get truncated now and then.
    return label, rng.uniform(0.08, 0.92) * width, rng.uniform(0.08, 0.92) * height, radius


def _shape_mask(rng: np.random.Generator, label: int, cx: float, cy: float, radius: float, height: int, width: int) -> np.ndarray:
    """Full (unoccluded) mask [H, W] uint8 of one shape, clipped to the image."""
    mask = np.zeros((height, width), dtype=np.uint8)
    name = SHAPES_CLASSES[label]
    centre = (int(round(cx)), int(round(cy)))
    if name == "circle":
        cv2.circle(mask, centre, int(round(radius)), 1, thickness=-1)
    elif name == "ring":
        cv2.circle(mask, centre, int(round(radius)), 1, thickness=-1)
        cv2.circle(mask, centre, int(round(radius * rng.uniform(0.45, 0.7))), 0, thickness=-1)
    else:
        cv2.fillPoly(mask, [_polygon(rng, name, cx, cy, radius)], 1)
    return mask


def _polygon(rng: np.random.Generator, name: str, cx: float, cy: float, radius: float) -> np.ndarray:
    """Vertices [V, 2] int32 of a rotated square, triangle or five-pointed star."""
    angles, radii = polygon_outline(rng, name, rotation=rng.uniform(0, 2 * np.pi))
    return polygon_points(angles, radius * radii, cx, cy)


def polygon_outline(rng: np.random.Generator, name: str, rotation: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A square's, triangle's or five-pointed star's vertices in polar form: angles [V] (radians, turned by
    ``rotation``) and radii [V] as fractions of the circumradius; triangles and stars drawn irregular."""
    if name == "square":
        angles = rotation + np.arange(4) * np.pi / 2
        radii = np.ones(4)
    elif name == "triangle":
        angles = rotation + np.arange(3) * 2 * np.pi / 3 + rng.uniform(-0.15, 0.15, size=3)
        radii = rng.uniform(0.9, 1.0, size=3)
    elif name == "star":
        angles = rotation + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.38, 0.55))
    else:
        raise ValueError(f"no polygon for shape {name!r}")
    return angles, radii


def polygon_points(angles: np.ndarray, radii: np.ndarray, cx: float, cy: float) -> np.ndarray:
    """Vertices [V, 2] int32 (rounded pixels) of a polygon given in polar form around (cx, cy)."""
    points = np.stack((cx + radii * np.cos(angles), cy + radii * np.sin(angles)), axis=1)
    return np.round(points).astype(np.int32)


def _paint(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray) -> None:
    """Fill the mask's pixels of ``image`` (uint8 [H, W, 3]) with a fresh texture, in place."""
    x0, y0, w, h = cv2.boundingRect(mask)
    if w == 0 or h == 0:
        return
    window = image[y0 : y0 + h, x0 : x0 + w]
    np.copyto(window, _texture(rng, h, w), where=mask[y0 : y0 + h, x0 : x0 + w, None].astype(bool))


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A two-colour pattern (flat, smooth noise, stripes or checkerboard): uint8 [H, W, 3]."""
    kind = rng.integers(4)
    if kind == 0:
        blend = np.full((height, width), rng.uniform(0, 0.3), dtype=np.float32)
    elif kind == 1:
        grid = rng.random((int(rng.integers(2, 7)), int(rng.integers(2, 7))), dtype=np.float32)
        blend = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    else:
        angle = rng.uniform(0, np.pi)
        frequency = np.float32(2 * np.pi / rng.uniform(6, 30))
        ys, xs = np.arange(height, dtype=np.float32)[:, None], np.arange(width, dtype=np.float32)[None]
        along = np.sin((xs * np.cos(angle) + ys * np.sin(angle)) * frequency)
        if kind == 2:
            blend = 0.5 + 0.5 * along
        else:
            across = np.sin((ys * np.cos(angle) - xs * np.sin(angle)) * frequency)
            blend = (along * across > 0).astype(np.float32)
    # Colour by look-up table: far cheaper than blending three float channels.
    colours = rng.uniform(0, 255, size=(2, 3))
    colours[1] = colours[0] + rng.uniform(0.2, 1.0) * (colours[1] - colours[0])  # pattern contrast
    palette = colours[0] + np.linspace(0, 1, 256)[:, None] * (colours[1] - colours[0])
    index = cv2.convertScaleAbs(blend, alpha=255)  # saturating: clips the cubic overshoot
    return cv2.LUT(cv2.merge([index, index, index]), palette.astype(np.uint8)[:, None])


def _finish(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Camera-like softening and sensor noise."""
    sigma = rng.uniform(0, 1.2)
    if sigma > 0.3:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    amplitude = int(rng.integers(2, 12))
    noise = rng.integers(-amplitude, amplitude + 1, size=image.shape[:2], dtype=np.int16)
    return cv2.add(image.astype(np.int16), cv2.merge([noise, noise, noise]), dtype=cv2.CV_8U)
