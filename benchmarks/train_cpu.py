"""``python -m benchmarks.train_cpu [train options]``: a training run (by default the plain ``python -m
train``), timed end to end, recorded with the machine it ran on in ``benchmarks/results/train_<date>.json``
(with every val evaluation of the run) and its ``curves.png`` as ``train_<date>_curves.png``."""

from __future__ import annotations

import datetime
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import torch

from command_line import entry_point
from contract.files import write_bytes, write_text
from train.curves import read_log
from train.errors import TrainError
from train.options import parse_options
from train.trainer import run_training
from yolact.checkpoint import CheckpointError
from yolact.data import DatasetError

from .machine import machine_details

PROG = "python -m benchmarks.train_cpu"
RESULTS = Path(__file__).parent / "results"


@entry_point(PROG, bad_input=(TrainError, CheckpointError, DatasetError))
def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    options = parse_options(argv)
    started = datetime.datetime.now(datetime.timezone.utc)
    wall_start = time.monotonic()
    result = run_training(options)
    wall = time.monotonic() - wall_start
    log = read_log(result.out / "log.jsonl")
    record = {
        "command": " ".join(["python -m train", *argv]),
        "date": started.isoformat(timespec="seconds"),
        "machine": {**machine_details(), "torch_threads": torch.get_num_threads()},
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
        "iterations": result.iteration,
        "train_seconds": round(result.seconds, 1),
        "wall_seconds": round(wall, 1),
        "skipped_steps": result.skipped_steps,
        "metrics": result.metrics,
        "evaluations": [row for row in log if "mask/AP" in row],
        "precision": next(row["precision"] for row in log if "precision" in row),
    }
    path = RESULTS / f"train_{started.strftime('%Y%m%d_%H%M%S')}.json"
    write_text(path, json.dumps(record, indent=2) + "\n")
    write_bytes(path.with_name(f"{path.stem}_curves.png"), (result.out / "curves.png").read_bytes())
    print(
        f"{path}: {result.iteration} iterations in {wall / 60:.1f} min; "
        f"mask AP {result.metrics.get('mask/AP', float('nan')):.3f}, "
        f"mask AP50 {result.metrics.get('mask/AP50', float('nan')):.3f}, box AP {result.metrics.get('box/AP', float('nan')):.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
