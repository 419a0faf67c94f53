"""What every backend provides, and the checks they share."""

from __future__ import annotations

import abc
import importlib
from pathlib import Path
from types import ModuleType

import numpy as np

from contract import OUTPUT_NAMES

from ..detections import RawOutputs
from ..errors import ModelError

PRECISIONS = ("fp32", "fp16", "bf16")


class Backend(abc.ABC):
    """A loaded model on one inference library.

    name: the backend's name; executed_on: what it actually runs on (providers, device);
    precision: the precision it computes in; metadata: the ``yolact.*`` key/values;
    max_batch: the most images per run, or None when the batch is dynamic;
    fixed_batch: True when every run must have exactly max_batch images (a static batch dimension);
    input_size: (H, W) when the graph takes only that image size, else None.
    """

    name: str
    executed_on: str
    precision: str
    metadata: dict[str, str]
    max_batch: int | None
    fixed_batch: bool
    input_size: tuple[int, int] | None

    @abc.abstractmethod
    def run(self, images: np.ndarray) -> RawOutputs:
        """The graph's outputs for a contiguous uint8 batch [B, H, W, 3]."""

    def close(self) -> None:
        """Release what the library holds outside Python's memory management (none by default)."""


def import_library(module: str, backend: str, install: str) -> ModuleType:
    """``module``, or a ModelError saying that ``backend`` is not installed and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ModelError(f"backend {backend}: {module} is not installed ({install})") from None


def check_outputs(found: list[str], model: Path) -> None:
    missing = [name for name in OUTPUT_NAMES if name not in found]
    if missing == ["mask_scores"]:
        raise ModelError(f"{model}: no 'mask_scores' output: exported by an older python -m export; export it again")
    if missing:
        raise ModelError(f"{model}: no {missing[0]!r} output: not a graph written by python -m export (outputs: {', '.join(found)})")


def static_dims(shape: list, model: Path) -> tuple[int | None, tuple[int, int] | None]:
    """(max_batch, input_size) from an input shape [B, H, W, 3] whose dynamic dimensions are not ints."""
    if len(shape) != 4:
        raise ModelError(f"{model}: input has shape {shape}, not [batch, height, width, 3]: not a graph written by python -m export")
    batch, height, width = (d if isinstance(d, int) and d > 0 else None for d in shape[:3])
    return batch, (height, width) if height and width else None
