"""The authors' reference outputs (tests/data/yolact_*.npz) and their deterministic weights recipe."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).parent / "data"
FIXTURES = ("yolact_resnet50", "yolact_darknet53")


@dataclass
class AuthorsFixture:
    config_name: str
    meta: dict
    arrays: dict[str, np.ndarray]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]


def load_fixture(config_name: str) -> AuthorsFixture:
    with np.load(DATA / f"{config_name}.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(str(arrays.pop("meta")))
    return AuthorsFixture(config_name, meta, arrays)


def recipe_state_dict(meta: dict) -> dict[str, torch.Tensor]:
    """The fixture README's weights recipe, under the authors' key names and in their order."""
    state = {}
    for key, shape in meta["state_dict"]:
        n = int(np.prod(shape)) if shape else 1
        if key.endswith("num_batches_tracked"):
            state[key] = torch.zeros(shape, dtype=torch.int64)
            continue
        u = np.random.default_rng(zlib.crc32(key.encode("utf-8"))).random(n).reshape(shape)
        if key.endswith("running_mean") or key.endswith("bias"):
            value = (2 * u - 1) * 0.1
        elif key.endswith("running_var") or len(shape) == 1:
            value = 0.5 + u
        else:
            fan_in = int(np.prod(shape[1:]))
            value = (2 * u - 1) * np.sqrt(3 / fan_in) * meta["weight_gain"]
            if "conf_layer" in key:
                value = value * meta["conf_gain"]
        state[key] = torch.from_numpy(np.asarray(value, dtype=np.float64)).to(torch.float32)
    return state
