"""Data pipeline: the embedded shapes generator, CocoDataset and the v2 transforms, on real small files."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from torchvision.ops import masks_to_boxes

from yolact import get_config, preprocess
from yolact.config import SHAPES_CLASSES
from yolact.data import (
    CocoDataset,
    DatasetError,
    ShapesDataset,
    collate,
    ensure_shapes_dataset,
    eval_transform,
    train_transform,
)
from yolact.data import shapes

CFG = get_config("yolact_tiny")

# pycocotools' RLE decoding under NumPy 2; harmless.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory) -> ShapesDataset:
    # Shared by name with test_evaluation.py: the second call reuses the files.
    return ensure_shapes_dataset(tmp_path_factory.getbasetemp() / "shapes-tiny", num_train=6, num_val=4)


def _images(root: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(root)): cv2.imread(str(p)) for p in sorted(root.glob("*/*.jpg"))}


def test_generator_is_deterministic_per_seed(tmp_path):
    first = ensure_shapes_dataset(tmp_path / "a", seed=3, num_train=3, num_val=2)
    second = ensure_shapes_dataset(tmp_path / "b", seed=3, num_train=3, num_val=2)
    other = ensure_shapes_dataset(tmp_path / "c", seed=4, num_train=3, num_val=2)
    for annotations in ("train_annotations", "val_annotations"):
        assert getattr(first, annotations).read_bytes() == getattr(second, annotations).read_bytes()
        assert getattr(first, annotations).read_bytes() != getattr(other, annotations).read_bytes()
    images_a, images_b = _images(first.root), _images(second.root)
    assert images_a.keys() == images_b.keys() and len(images_a) == 5
    assert all(np.array_equal(images_a[name], images_b[name]) for name in images_a)
    assert not np.array_equal(images_a["train/000000.jpg"], _images(other.root)["train/000000.jpg"])


def test_generation_is_atomic_and_reused(tmp_path, monkeypatch):
    root = tmp_path / "shapes"

    def crash(*args):
        raise RuntimeError("simulated crash")

    with monkeypatch.context() as patch:
        patch.setattr(shapes, "_write_split", crash)
        with pytest.raises(RuntimeError):
            ensure_shapes_dataset(root, num_train=2, num_val=1)
    assert list(tmp_path.iterdir()) == []  # neither the dataset nor its temporary folder

    dataset = ensure_shapes_dataset(root, num_train=2, num_val=1)
    stamp = dataset.train_annotations.stat().st_mtime_ns
    monkeypatch.setattr(shapes, "_write_split", crash)  # a second call must not generate again
    assert ensure_shapes_dataset(root, num_train=2, num_val=1) == dataset
    assert dataset.train_annotations.stat().st_mtime_ns == stamp
    with pytest.raises(DatasetError, match=str(root)):
        ensure_shapes_dataset(root, num_train=5, num_val=1)


def test_default_root_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLACT_DATA_DIR", str(tmp_path))
    assert shapes.default_root(seed=2) == tmp_path / "shapes-v1-seed2"
    assert shapes.default_root(seed=2, num_train=10, num_val=5) == tmp_path / "shapes-v1-seed2-train10-val5"


def test_generated_annotations_are_coco_and_boxes_bound_masks(tiny_shapes):
    coco = COCO(str(tiny_shapes.train_annotations))
    assert [c["name"] for c in coco.loadCats(sorted(coco.getCatIds()))] == list(SHAPES_CLASSES)
    sizes = {(img["height"], img["width"]) for img in coco.imgs.values()}
    assert all(256 <= h <= 400 and 256 <= w <= 400 for h, w in sizes) and any(h != w for h, w in sizes)
    assert len(coco.anns) >= 2 * len(coco.imgs)
    for ann in coco.anns.values():
        mask = coco.annToMask(ann)
        ys, xs = np.nonzero(mask)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert ann["area"] == mask.sum() >= shapes.MIN_VISIBLE_AREA
        assert ann["iscrowd"] == 0
    for image_id in coco.imgs:  # masks are the visible parts: those of one image never overlap
        masks = [coco.annToMask(a) for a in coco.imgToAnns[image_id]]
        assert np.sum(masks, axis=0).max() <= 1


def test_same_class_instances_touch_or_overlap():
    touching_pairs = 0
    for index in range(20):
        _, masks, labels = shapes.render_image(np.random.default_rng([0, 0, index]))
        grown = [cv2.dilate(m, np.ones((3, 3), np.uint8)) for m in masks]
        for a in range(len(masks)):
            for b in range(a + 1, len(masks)):
                touching_pairs += labels[a] == labels[b] and bool((grown[a] & masks[b]).any())
    assert touching_pairs >= 5


def test_dataset_targets(tiny_shapes):
    dataset = CocoDataset(tiny_shapes.val_images, tiny_shapes.val_annotations, eval_transform(CFG))
    assert dataset.class_names == SHAPES_CLASSES and dataset.category_ids == [1, 2, 3, 4, 5]
    assert len(dataset) == 4 and dataset.image_ids == [1, 2, 3, 4]
    image, target = dataset[0]
    s = CFG.max_size
    n = len(dataset.coco.imgToAnns[1])
    assert image.shape == (3, s, s) and image.dtype == torch.float32
    assert target["boxes"].shape == (n, 4) and target["boxes"].dtype == torch.float32
    assert target["labels"].shape == (n,) and target["labels"].dtype == torch.int64
    assert target["masks"].shape == (n, s, s) and target["masks"].dtype == torch.uint8
    assert set(target["masks"].unique().tolist()) <= {0, 1}
    assert target["crowd_boxes"].shape == (0, 4)
    assert target["image_id"] == 1
    info = dataset.coco.imgs[1]
    assert target["orig_size"] == (info["height"], info["width"])
    assert 0 <= target["boxes"].min() and target["boxes"].max() <= 1
    images, targets = collate([dataset[0], dataset[1]])
    assert images.shape == (2, 3, s, s) and [t["image_id"] for t in targets] == [1, 2]


def _rewrite_annotations(source: Path, target: Path, edit) -> Path:
    coco = json.loads(source.read_text())
    edit(coco)
    target.write_text(json.dumps(coco))
    return target


def test_label_map_with_non_contiguous_ids_and_crowd(tiny_shapes, tmp_path):
    def relabel(coco):
        coco["categories"] = [{"id": 7, "name": "late"}, {"id": 3, "name": "early"}]
        for ann in coco["annotations"]:
            ann["category_id"] = 7 if ann["category_id"] % 2 else 3
        crowd = dict(coco["annotations"][0], id=10_000, iscrowd=1, category_id=3)
        coco["annotations"].append(crowd)
        coco["images"].append(
            {"id": 99, "file_name": "000000.jpg", "height": coco["images"][0]["height"], "width": coco["images"][0]["width"]}
        )  # an image without annotations

    annotations = _rewrite_annotations(tiny_shapes.val_annotations, tmp_path / "relabelled.json", relabel)
    dataset = CocoDataset(tiny_shapes.val_images, annotations, eval_transform(CFG))
    assert dataset.category_ids == [3, 7] and dataset.class_names == ("early", "late")
    _, target = dataset[0]
    expected = [0 if a["category_id"] == 3 else 1 for a in dataset.coco.imgToAnns[1] if not a["iscrowd"]]
    assert target["labels"].tolist() == expected
    assert target["crowd_boxes"].shape == (1, 4) and len(target["boxes"]) == len(expected)
    _, empty = dataset[dataset.image_ids.index(99)]
    assert empty["boxes"].shape == (0, 4) and empty["masks"].shape == (0, CFG.max_size, CFG.max_size)


def test_corrupt_and_missing_files_name_the_path(tiny_shapes, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(tiny_shapes.val_images, images)
    (images / "000001.jpg").write_bytes(b"not a jpeg")
    dataset = CocoDataset(images, tiny_shapes.val_annotations, eval_transform(CFG))
    dataset[0]
    with pytest.raises(DatasetError, match="000001.jpg"):
        dataset[1]

    (images / "000003.jpg").unlink()
    with pytest.raises(DatasetError, match="000003.jpg"):
        CocoDataset(images, tiny_shapes.val_annotations, eval_transform(CFG))
    with pytest.raises(DatasetError, match="nowhere.json"):
        CocoDataset(images, tmp_path / "nowhere.json", eval_transform(CFG))
    with pytest.raises(DatasetError, match="no-images"):
        CocoDataset(tmp_path / "no-images", tiny_shapes.val_annotations, eval_transform(CFG))
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    with pytest.raises(DatasetError, match="garbage.json"):
        CocoDataset(images, garbage, eval_transform(CFG))


def test_bad_annotations_are_skipped_with_one_counted_warning(tiny_shapes, tmp_path):
    def corrupt(coco):
        coco["annotations"][0]["bbox"][0] = 1000.0  # outside the image
        coco["annotations"][1]["category_id"] = 42  # unknown category

    annotations = _rewrite_annotations(tiny_shapes.val_annotations, tmp_path / "bad.json", corrupt)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = CocoDataset(tiny_shapes.val_images, annotations, eval_transform(CFG))
    assert dataset.num_skipped_annotations == 2
    assert len(caught) == 1 and "skipped 2 invalid annotations" in str(caught[0].message)
    assert "bad.json" in str(caught[0].message) and "annotation 1 " in str(caught[0].message)
    total = sum(len(dataset[i][1]["labels"]) for i in range(len(dataset)))
    assert total == len(dataset.coco.anns) - 2


def test_train_transform_keeps_boxes_and_masks_consistent(tiny_shapes):
    dataset = CocoDataset(tiny_shapes.train_images, tiny_shapes.train_annotations, train_transform(CFG))
    s = CFG.max_size
    torch.manual_seed(0)
    kept = 0
    for index in list(range(len(dataset))) * 2:
        image, target = dataset[index]
        assert image.shape == (3, s, s) and target["masks"].shape[1:] == (s, s)
        boxes = target["boxes"] * s
        assert len(boxes) == len(target["labels"]) == len(target["masks"])
        assert ((boxes[:, 2:] - boxes[:, :2]) >= CFG.min_box_size_px - 1e-4).all()
        nonempty = target["masks"].flatten(1).bool().any(dim=1)
        mask_boxes = masks_to_boxes(target["masks"][nonempty])
        mask_boxes[:, 2:] += 1  # masks_to_boxes gives the last pixel, boxes the edge after it
        assert (mask_boxes[:, :2] >= boxes[nonempty, :2] - 2).all()
        assert (mask_boxes[:, 2:] <= boxes[nonempty, 2:] + 2).all()
        kept += len(boxes)
    assert kept > 0


def test_train_transform_is_deterministic_under_a_seed(tiny_shapes):
    dataset = CocoDataset(tiny_shapes.train_images, tiny_shapes.train_annotations, train_transform(CFG))
    runs = []
    for _ in range(2):
        torch.manual_seed(7)
        runs.append([dataset[i] for i in range(3)])
    for (image_a, target_a), (image_b, target_b) in zip(*runs):
        assert torch.equal(image_a, image_b)
        assert all(torch.equal(target_a[k], target_b[k]) for k in ("boxes", "labels", "masks", "crowd_boxes"))


def test_eval_transform_equals_preprocess(tiny_shapes):
    dataset = CocoDataset(tiny_shapes.val_images, tiny_shapes.val_annotations, eval_transform(CFG))
    image_bgr = dataset.read_image(2)
    expected = preprocess(torch.from_numpy(image_bgr)[None], CFG)[0]
    assert torch.equal(dataset[2][0], expected)
