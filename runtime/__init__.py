"""Torch-free inference on graphs made by ``python -m export``: onnxruntime, OpenVINO or TensorRT for the
graph, numpy and OpenCV for the rest. Nothing here imports torch or the ``yolact`` package, so
``pip install ./runtime`` gives a deployment machine this package alone.

    seg = Segmenter("model.onnx")
    for detections in seg(["a.jpg", "b.jpg"]):
        print(detections.class_names, detections.scores, detections.boxes, detections.masks.shape)
"""

from .backends import BACKENDS
from .backends.base import PRECISIONS
from .detections import Detections, MaskCrop, RawOutputs, paste_detections
from .errors import ImageError, ModelError, SegmenterError
from .images import read_image
from .segmenter import Segmenter

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "Detections",
    "ImageError",
    "MaskCrop",
    "ModelError",
    "PRECISIONS",
    "RawOutputs",
    "Segmenter",
    "SegmenterError",
    "paste_detections",
    "read_image",
]
