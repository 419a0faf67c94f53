"""Deterministic "recipe" weights: the weights the authors' reference outputs were computed on
(``tests/data/authors-yolact-README.md``), for any model by its state-dict keys and shapes.

Each entry is drawn from a generator seeded by the CRC32 of its key, so the same key gets the same
values in any model and on any machine. Besides the equivalence tests, they give speed and runtime checks
a model that fills every detection slot, which random initialisation does not.
"""

from __future__ import annotations

import zlib
from typing import Iterable, Sequence

import numpy as np
import torch

from .config import YolactConfig
from .model import Yolact


def recipe_state_dict(
    entries: Iterable[tuple[str, Sequence[int]]], weight_gain: float = 1.0, conf_gain: float = 1.0
) -> dict[str, torch.Tensor]:
    """(key, shape) pairs -> float32 tensors (int64 zeros for ``num_batches_tracked``), in the given order."""
    state = {}
    for key, shape in entries:
        shape = tuple(shape)
        if key.endswith("num_batches_tracked"):
            state[key] = torch.zeros(shape, dtype=torch.int64)
            continue
        u = np.random.default_rng(zlib.crc32(key.encode("utf-8"))).random(int(np.prod(shape))).reshape(shape)
        if key.endswith("running_mean") or key.endswith("bias"):
            value = (2 * u - 1) * 0.1
        elif key.endswith("running_var") or len(shape) == 1:
            value = 0.5 + u
        else:
            fan_in = int(np.prod(shape[1:]))
            value = (2 * u - 1) * np.sqrt(3 / fan_in) * weight_gain
            if "conf_layer" in key:
                value = value * conf_gain
        state[key] = torch.from_numpy(np.asarray(value, dtype=np.float64)).to(torch.float32)
    return state


def recipe_model(cfg: YolactConfig, weight_gain: float = 1.0, conf_gain: float = 1.0) -> Yolact:
    """A model of ``cfg`` in eval mode holding the recipe weights for its own keys."""
    model = Yolact(cfg)
    entries = [(key, value.shape) for key, value in model.state_dict().items()]
    model.load_state_dict(recipe_state_dict(entries, weight_gain, conf_gain))
    return model.eval()
