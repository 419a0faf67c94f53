"""The embedded videos with ground truth (yolact.data.shape_video): deterministic from a seed, ground truth
consistent with the pixels, shapes entering, leaving and hiding behind each other."""

from __future__ import annotations

import numpy as np

from yolact.data.shape_video import OCCLUDED, VideoScenario, render_video
from yolact.data.shapes import MIN_VISIBLE_AREA

SCENARIO = VideoScenario("test", frames=40, height=120, width=160, shapes=6, entering=0.5, crossing=0.9, radius=(15.0, 30.0))


def test_a_video_is_a_function_of_its_seed():
    first, again, other = (list(render_video(SCENARIO, seed)) for seed in (0, 0, 1))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.identities, b.identities)
        np.testing.assert_array_equal(a.masks, b.masks)
    assert any((a.image != c.image).any() for a, c in zip(first, other))


def test_ground_truth_matches_the_pixels():
    seen_per_frame = []
    for frame in render_video(SCENARIO, seed=2):
        assert frame.image.shape == (120, 160, 3) and frame.image.dtype == np.uint8
        assert len(set(frame.identities.tolist())) == len(frame.identities)
        assert (frame.masks.sum(axis=0) <= 1).all()  # visible masks never overlap
        for mask, (x1, y1, x2, y2) in zip(frame.masks, frame.boxes):
            ys, xs = np.nonzero(mask)
            assert mask.sum() >= MIN_VISIBLE_AREA
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x1, y1, x2, y2)
        seen_per_frame.append(set(frame.identities.tolist()))
    assert seen_per_frame[0] != set().union(*seen_per_frame)  # shapes enter


def test_the_occluded_scenario_hides_most_shapes_at_some_point():
    hidden, first, last = set(), {}, {}
    for index, frame in enumerate(render_video(OCCLUDED, seed=1)):
        for identity in frame.identities.tolist():
            first.setdefault(identity, index)
            last[identity] = index
        hidden.update(frame.identities[frame.visible_fraction < 0.5].tolist())
    assert len(hidden) > len(first) / 2
    assert max(first.values()) > 0 and min(last.values()) < OCCLUDED.frames - 1  # shapes enter and leave
