"""YOLACT real-time instance segmentation, numerically equivalent to the authors' implementation."""

from .checkpoint import CheckpointError, load_model, save_weights
from .config import CONFIGS, YolactConfig, get_config
from .detection import PaddedDetections, assemble_masks, detect, detect_traditional
from .inference import BatchResult, EndToEnd, ImageDetections, predict, to_image
from .model import Yolact, YolactOutput
from .preprocess import preprocess

__version__ = "0.1.0"

# The padded batch type's name until 0.1 (it shared its name with the per-image ``runtime.Detections``);
# kept for one release.
Detections = PaddedDetections

__all__ = [
    "BatchResult",
    "CONFIGS",
    "CheckpointError",
    "Detections",
    "EndToEnd",
    "ImageDetections",
    "PaddedDetections",
    "Yolact",
    "YolactConfig",
    "YolactOutput",
    "assemble_masks",
    "detect",
    "detect_traditional",
    "get_config",
    "load_model",
    "predict",
    "preprocess",
    "save_weights",
    "to_image",
]
