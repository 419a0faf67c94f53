"""Trains YOLACT. Without arguments: yolact_small on the embedded shapes dataset. Multi-process:
``torchrun --nproc_per_node N -m train ...``

This module holds the options of a training run and the ``python -m train`` command line that fills them.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Optional, Sequence

from command_line import entry_parser, non_negative_int, positive_float, positive_int
from yolact import CONFIGS, YolactConfig

PROG = "python -m train"
DEFAULT_CONFIG = "yolact_small"


@dataclass(frozen=True)
class TrainOptions:
    """One training run. ``None`` means "the config's value" (or, for data, the embedded dataset)."""

    config: str = DEFAULT_CONFIG
    config_overrides: tuple[tuple[str, Any], ...] = ()
    train_images: Optional[Path] = None
    train_annotations: Optional[Path] = None
    val_images: Optional[Path] = None
    val_annotations: Optional[Path] = None
    iters: Optional[int] = None
    batch_size: Optional[int] = None
    lr: Optional[float] = None
    device: Optional[str] = None
    workers: int = 1
    out: Path = Path("runs/train")
    resume: Optional[Path] = None
    pretrained_backbone: Optional[Path] = None
    eval_every: Optional[int] = None
    checkpoint_every: Optional[int] = None
    keep_last: int = 3
    log_every: int = 10
    seed: int = 0
    sync_bn: bool = False
    time_limit: Optional[float] = None
    progress: bool = True


def _config_override(text: str) -> tuple[str, Any]:
    """``FIELD=VALUE``, VALUE read as JSON when it parses (numbers, lists, booleans), else as a string."""
    field, sep, raw = text.partition("=")
    known = YolactConfig.__dataclass_fields__
    if not sep or field not in known or field in ("name", "class_names"):
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected FIELD=VALUE with FIELD a config field (e.g. max_size=256, lr_steps=[2800,3400])"
        )
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    default = known[field].default
    expected = type(default)
    if isinstance(default, tuple):
        fits = isinstance(value, list)
    elif isinstance(default, float):
        fits = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        fits = type(value) is expected
    if not fits:
        example = {tuple: "a JSON list, e.g. [0,0,0,1]", int: "an integer", float: "a number", bool: "true or false"}.get(
            expected, "a string"
        )
        raise argparse.ArgumentTypeError(f"{text!r}: {field} takes {example}")
    if isinstance(default, float):
        value = float(value)
    return field, tuple(value) if isinstance(value, list) else value


def build_parser() -> argparse.ArgumentParser:
    parser = entry_parser(PROG, __doc__)
    parser.add_argument("--config", default=DEFAULT_CONFIG, choices=sorted(CONFIGS), help="model config")
    parser.add_argument(
        "--set",
        dest="config_overrides",
        type=_config_override,
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="change one config field (repeatable), e.g. --set max_size=256",
    )
    for split in ("train", "val"):
        parser.add_argument(f"--{split}-images", type=Path, help=f"{split} image folder (custom COCO data)")
        parser.add_argument(f"--{split}-annotations", type=Path, help=f"{split} COCO annotation JSON")
    parser.add_argument(
        "--iters", type=positive_int, help="training iterations (default: the config's, scaled by batch size / the config's batch size)"
    )
    parser.add_argument("--batch-size", type=positive_int, help="global batch size (default: the config's)")
    parser.add_argument(
        "--lr", type=positive_float, help="base learning rate (default: the config's, scaled by batch size / the config's batch size)"
    )
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument("--workers", type=non_negative_int, default=1, help="data loader processes per rank")
    parser.add_argument("--out", type=Path, default=Path("runs/train"), help="output folder")
    parser.add_argument("--resume", type=Path, help="continue from a training checkpoint (last.pth, ckpt_N.pth)")
    parser.add_argument("--pretrained-backbone", type=Path, help="torchvision ImageNet ResNet state dict")
    parser.add_argument(
        "--eval-every",
        type=non_negative_int,
        help="evaluate on the val split every N iterations, 0: only at the end (default: a sixth of the run)",
    )
    parser.add_argument(
        "--checkpoint-every",
        type=positive_int,
        help="write ckpt_<iter>.pth every N iterations (default: --eval-every, else a sixth of the run)",
    )
    parser.add_argument("--keep-last", type=positive_int, default=3, help="numbered checkpoints to keep")
    parser.add_argument("--log-every", type=positive_int, default=10, help="log.jsonl row every N iterations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across GPUs (DDP on CUDA)")
    parser.add_argument(
        "--time-limit", type=positive_float, metavar="MINUTES", help="stop training after this many minutes, then evaluate and save"
    )
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return parser


def parse_options(argv: Sequence[str] | None = None) -> TrainOptions:
    args = vars(build_parser().parse_args(sys.argv[1:] if argv is None else argv))
    args["config_overrides"] = tuple(args["config_overrides"])
    return TrainOptions(**{f.name: args[f.name] for f in fields(TrainOptions)})
