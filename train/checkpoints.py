"""Training checkpoints: everything needed to continue a run exactly, written atomically.

Layout: ``{"model", "config", "optimizer", "scheduler", "iteration", "rng", "best_ap", "skipped_steps"}``;
``yolact.load_model`` reads the ``model``/``config`` part of it like any weights file.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolact.checkpoint import CheckpointError, load_file
from contract.files import replaced_on_success

from .errors import TrainError

CHECKPOINT_NAME = re.compile(r"ckpt_(\d+)\.pth")


def rng_state() -> dict[str, Any]:
    """Every global RNG state, as tensors and plain values (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos, "has_gauss": has_gauss, "gauss": gauss},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    numpy = state["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"], numpy["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with replaced_on_success(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A training checkpoint written by :func:`save_checkpoint`; :class:`TrainError` if it is not one."""
    try:
        state = load_file(path)
    except CheckpointError as exc:
        raise TrainError(f"--resume {exc}") from None
    required = {"model", "config", "optimizer", "scheduler", "iteration", "rng"}
    if not isinstance(state, dict) or not required <= set(state):
        raise TrainError(f"--resume {path}: not a training checkpoint (it needs {', '.join(sorted(required))})")
    return state


def prune_checkpoints(folder: Path, keep_last: int) -> None:
    """Delete all but the ``keep_last`` newest ``ckpt_<iteration>.pth`` files."""
    numbered = sorted((int(m.group(1)), p) for p in folder.glob("ckpt_*.pth") if (m := CHECKPOINT_NAME.fullmatch(p.name)))
    for _, path in numbered[: max(0, len(numbered) - keep_last)]:
        path.unlink(missing_ok=True)
