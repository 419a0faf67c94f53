"""The authors' reference outputs (tests/data/yolact_*.npz) and their deterministic weights recipe."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from yolact.recipe import recipe_state_dict as yolact_recipe_state_dict

DATA = Path(__file__).parent / "data"
FIXTURES = ("yolact_resnet50", "yolact_darknet53", "yolact_plus_resnet50")


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
    return yolact_recipe_state_dict(meta["state_dict"], meta["weight_gain"], meta["conf_gain"])
