"""Training: ``python -m train`` (SGD with warm-up, checkpoints, resume, DDP)."""

from .errors import TrainError
from .options import TrainOptions, parse_options
from .trainer import TrainResult, run_training

__all__ = ["TrainError", "TrainOptions", "TrainResult", "parse_options", "run_training"]
