"""Command-line entry of ``python -m train``: bad input ends in one line on stderr and exit 2, never a
traceback."""

from __future__ import annotations

from typing import Sequence

from command_line import entry_point
from yolact.checkpoint import CheckpointError
from yolact.data import DatasetError

from .errors import TrainError
from .options import PROG, parse_options
from .trainer import run_training


@entry_point(PROG, bad_input=(TrainError, CheckpointError, DatasetError))
def main(argv: Sequence[str] | None = None) -> int:
    result = run_training(parse_options(argv))
    if result.metrics:
        shown = ", ".join(f"{k} {result.metrics[k]:.3f}" for k in ("mask/AP", "mask/AP50", "box/AP") if k in result.metrics)
        print(f"evaluation at iteration {result.iteration}: {shown}")
    print(f"weights: {result.out / 'weights.pth'} ({result.iteration} iterations, {result.seconds / 60:.1f} min)")
    return 0
