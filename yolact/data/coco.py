"""COCO-format instance segmentation datasets (pycocotools) with a contiguous label map."""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from ..fileio import ImageReadError, read_bgr_image

# How far (pixels) a box or polygon may reach past the image border; real annotations are float and some
# tools round outwards.
BORDER_TOLERANCE = 1.0

Target = dict[str, Any]
Transform = Callable[[np.ndarray, Target], tuple[torch.Tensor, Target]]


class DatasetError(Exception):
    """A dataset file that cannot be used; the message is one line naming the file."""


class CocoDataset(Dataset):
    """Images and instance annotations of one COCO annotation file.

    ``dataset[i]`` is ``(image, target)``: the network input [3, S, S] float32 made by ``transform`` and a
    dict with

    - ``boxes`` [N, 4] float32: x1, y1, x2, y2 normalised to [0, 1] (non-crowd instances)
    - ``labels`` [N] int64: 0-based contiguous class index (see ``category_ids``)
    - ``masks`` [N, S, S] uint8 {0, 1}
    - ``crowd_boxes`` [M, 4] float32: normalised boxes of the ``iscrowd`` regions
    - ``image_id`` int, ``orig_size`` (height, width) of the image file

    Annotations that do not fit their image (box outside it or empty, polygon out of bounds, RLE of another
    size, unknown category, no segmentation) are skipped; their number is ``num_skipped_annotations`` and
    one warning summarises them. Images without annotations are kept.
    """

    def __init__(self, image_dir: str | os.PathLike, annotation_file: str | os.PathLike, transform: Transform):
        self.image_dir = Path(image_dir)
        self.annotation_file = Path(annotation_file)
        self.transform = transform
        if not self.annotation_file.is_file():
            raise DatasetError(f"{self.annotation_file}: no such annotation file")
        if not self.image_dir.is_dir():
            raise DatasetError(f"{self.image_dir}: no such image folder")
        self.coco = _load_coco(self.annotation_file)
        categories = sorted(self.coco.loadCats(self.coco.getCatIds()), key=lambda c: c["id"])
        self.category_ids: list[int] = [c["id"] for c in categories]
        self.class_names: tuple[str, ...] = tuple(c["name"] for c in categories)
        self._label_of = {cat_id: label for label, cat_id in enumerate(self.category_ids)}
        self.image_ids: list[int] = sorted(self.coco.getImgIds())
        self._check_image_files()
        self._annotations, problems = self._valid_annotations()
        self.num_skipped_annotations = len(problems)
        if problems:
            warnings.warn(
                f"{self.annotation_file}: skipped {len(problems)} invalid annotations, e.g. {problems[0]}",
                stacklevel=2,
            )

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_path(self, index: int) -> Path:
        return self.image_dir / self.coco.imgs[self.image_ids[index]]["file_name"]

    def read_image(self, index: int) -> np.ndarray:
        """The image file as BGR uint8 [H, W, 3]; ``DatasetError`` if it is unreadable or not the size the
        annotation file says."""
        path = self.image_path(index)
        try:
            image = read_bgr_image(path)
        except ImageReadError as exc:
            raise DatasetError(str(exc)) from None
        info = self.coco.imgs[self.image_ids[index]]
        if image.shape[:2] != (info["height"], info["width"]):
            raise DatasetError(
                f"{path}: image is {image.shape[1]}x{image.shape[0]} but {self.annotation_file.name} says {info['width']}x{info['height']}"
            )
        return image

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Target]:
        image = self.read_image(index)
        image_id = self.image_ids[index]
        image, instances = self.transform(image, self._instances(image_id, image.shape[:2]))
        height, width = instances["boxes"].canvas_size
        boxes = instances["boxes"].as_subclass(torch.Tensor).float() / torch.tensor([width, height, width, height])
        crowd = instances["iscrowd"]
        target = {
            "boxes": boxes[~crowd],
            "labels": instances["labels"][~crowd],
            "masks": instances["masks"].as_subclass(torch.Tensor)[~crowd].to(torch.uint8),
            "crowd_boxes": boxes[crowd],
            "image_id": image_id,
            "orig_size": (self.coco.imgs[image_id]["height"], self.coco.imgs[image_id]["width"]),
        }
        return image, target

    def _instances(self, image_id: int, size: tuple[int, int]) -> Target:
        """All instances of an image, crowd regions included, in pixels: the transforms' input.

        ``boxes`` BoundingBoxes [N, 4] XYXY, ``masks`` Mask [N, H, W] uint8, ``labels`` [N] int64,
        ``iscrowd`` [N] bool.
        """
        annotations = self._annotations[image_id]
        height, width = size
        boxes = torch.tensor([a["bbox"] for a in annotations], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        if annotations:
            rles = [self.coco.annToRLE(a) for a in annotations]
            masks = torch.from_numpy(np.ascontiguousarray(mask_utils.decode(rles).transpose(2, 0, 1)))
        else:
            masks = torch.zeros(0, height, width, dtype=torch.uint8)
        return {
            # Boxes may reach BORDER_TOLERANCE past the image.
            "boxes": F.clamp_bounding_boxes(tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=size)),
            "masks": tv_tensors.Mask(masks),
            "labels": torch.tensor([self._label_of[a["category_id"]] for a in annotations], dtype=torch.int64),
            "iscrowd": torch.tensor([bool(a.get("iscrowd", 0)) for a in annotations], dtype=torch.bool),
        }

    def _check_image_files(self) -> None:
        # One directory listing instead of a stat per image; names with a sub-folder still get a stat.
        present = set(os.listdir(self.image_dir))
        names = [self.coco.imgs[i]["file_name"] for i in self.image_ids]
        missing = [name for name in names if name not in present and not (self.image_dir / name).is_file()]
        if missing:
            raise DatasetError(
                f"{self.image_dir / missing[0]}: no such image file ({len(missing)} of the {len(self.image_ids)} "
                f"images listed in {self.annotation_file.name} are missing)"
            )

    def _valid_annotations(self) -> tuple[dict[int, list[dict]], list[str]]:
        """Per image id its usable annotations; and one description per skipped annotation."""
        valid: dict[int, list[dict]] = {}
        problems = []
        for image_id in self.image_ids:
            info = self.coco.imgs[image_id]
            valid[image_id] = []
            for ann in self.coco.imgToAnns.get(image_id, []):
                problem = self._annotation_problem(ann, info["height"], info["width"])
                if problem:
                    problems.append(f"annotation {ann.get('id')} of {info['file_name']}: {problem}")
                else:
                    valid[image_id].append(ann)
        return valid, problems

    def _annotation_problem(self, ann: dict, height: int, width: int) -> str | None:
        """Why an annotation cannot be used on a ``height`` x ``width`` image, or None."""
        if ann.get("category_id") not in self._label_of:
            return f"unknown category {ann.get('category_id')!r}"
        box = ann.get("bbox")
        if not (isinstance(box, (list, tuple)) and len(box) == 4):
            return f"bbox {box!r} is not [x, y, w, h]"
        x, y, w, h = box
        if w <= 0 or h <= 0:
            return f"bbox {box} has no area"
        if min(x, y) < -BORDER_TOLERANCE or x + w > width + BORDER_TOLERANCE or y + h > height + BORDER_TOLERANCE:
            return f"bbox {box} reaches outside the {width}x{height} image"
        return _segmentation_problem(ann.get("segmentation"), height, width)


def _segmentation_problem(segmentation: Any, height: int, width: int) -> str | None:
    if isinstance(segmentation, dict):  # RLE, compressed or not
        if list(segmentation.get("size", ())) != [height, width]:
            return f"RLE of size {segmentation.get('size')} on a {height}x{width} image"
        return None
    if not isinstance(segmentation, list) or not segmentation:
        return "no segmentation"
    for polygon in segmentation:
        if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2:
            return "polygon with fewer than 3 points"
        xs, ys = np.asarray(polygon[0::2], dtype=np.float64), np.asarray(polygon[1::2], dtype=np.float64)
        if (
            xs.min() < -BORDER_TOLERANCE
            or ys.min() < -BORDER_TOLERANCE
            or xs.max() > width + BORDER_TOLERANCE
            or ys.max() > height + BORDER_TOLERANCE
        ):
            return f"polygon reaches outside the {width}x{height} image"
    return None


def _load_coco(annotation_file: Path) -> COCO:
    """pycocotools' COCO object, its progress prints silenced; ``DatasetError`` for a file it cannot parse."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(str(annotation_file))
    except Exception as exc:  # json errors, pycocotools' asserts, KeyErrors on missing sections
        raise DatasetError(f"{annotation_file}: not a COCO annotation file ({type(exc).__name__}: {exc})") from None


def collate(batch: list[tuple[torch.Tensor, Target]]) -> tuple[torch.Tensor, list[Target]]:
    """Samples -> (images [B, 3, S, S], list of B target dicts)."""
    images, targets = zip(*batch)
    return torch.stack(images), list(targets)
