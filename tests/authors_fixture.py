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


def assert_close(ours: np.ndarray, theirs: np.ndarray, atol: float, what: str) -> None:
    diff = np.abs(np.asarray(ours, np.float64) - np.asarray(theirs, np.float64)).max()
    assert diff <= atol, f"{what}: max |diff| {diff:.3g} > {atol}"


def match_detections(fixture, classes, boxes, scores, box_tol):
    """Index of our detection for each of the authors' (same class, box within tolerance), or -1.

    Only detections tied (within 2e-5) with the authors' last kept score may stay unmatched: which of
    those take the last places is not significant.
    """
    theirs_class, theirs_box, theirs_score = fixture["det_class"], fixture["det_box"], fixture["det_score"]
    matched = np.full(len(theirs_class), -1)
    used = set()
    for i in range(len(theirs_class)):
        close = np.abs(boxes - theirs_box[i]).max(axis=1) <= box_tol
        candidates = [j for j in np.flatnonzero((classes == theirs_class[i]) & close) if j not in used]
        if candidates:
            best = min(candidates, key=lambda j: abs(scores[j] - theirs_score[i]))
            matched[i] = best
            used.add(best)
    cut = theirs_score.min()
    unmatched = np.flatnonzero(matched < 0)
    assert all(theirs_score[i] - cut <= 2e-5 for i in unmatched), f"unmatched detections {unmatched.tolist()}"
    return matched
