"""Command-line entry: bad input ends in one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import sys
from typing import Sequence

from yolact.checkpoint import CheckpointError
from yolact.data import DatasetError

from .errors import TrainError
from .options import parse_options
from .trainer import run_training


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    try:
        result = run_training(options)
    except (TrainError, CheckpointError, DatasetError) as exc:
        print(f"python -m train: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. an output folder that cannot be written
        print(f"python -m train: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if result.metrics:
        shown = ", ".join(f"{k} {result.metrics[k]:.3f}" for k in ("mask/AP", "mask/AP50", "box/AP") if k in result.metrics)
        print(f"evaluation at iteration {result.iteration}: {shown}")
    print(f"weights: {result.out / 'weights.pth'} ({result.iteration} iterations, {result.seconds / 60:.1f} min)")
    return 0
