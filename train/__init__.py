"""Training: ``python -m train`` (the authors' SGD for the COCO configs, AdamW for the from-scratch small
configs; warm-up, checkpoints, resume, DDP)."""

from .errors import TrainError
from .options import TrainOptions, parse_options
from .trainer import TrainResult, run_training

__all__ = ["TrainError", "TrainOptions", "TrainResult", "parse_options", "run_training"]
