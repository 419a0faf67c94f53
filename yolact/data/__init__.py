"""Datasets, augmentation and the embedded procedurally generated shapes dataset."""

from .coco import CocoDataset, DatasetError, collate
from .shapes import ShapesDataset, ensure_shapes_dataset
from .transforms import eval_transform, train_transform

__all__ = [
    "CocoDataset",
    "DatasetError",
    "ShapesDataset",
    "collate",
    "ensure_shapes_dataset",
    "eval_transform",
    "train_transform",
]
