"""Our pipeline reproduces the authors' YOLACT and YOLACT++ stage by stage (tests/data/yolact_*.npz, from dbolya/yolact).

The weights are rebuilt from the fixture's recipe under the authors' key names, written to a .pth file and
loaded through the same loader as a released checkpoint. Tolerances are the fixture README's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from authors_fixture import FIXTURES, assert_close, load_fixture, match_detections, recipe_state_dict
from yolact import EndToEnd, load_model, preprocess, to_image


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
RUNS = [pytest.param((name, "cpu"), id=name) for name in FIXTURES]
RUNS += [pytest.param((name, "cuda"), id=f"{name}-cuda", marks=CUDA) for name in FIXTURES]


@pytest.fixture(scope="module", params=RUNS)
def run(request, tmp_path_factory):
    """Every stage of our pipeline on the fixture's image, moved to the CPU for comparison."""
    name, device = request.param
    fixture = load_fixture(name)
    weights = tmp_path_factory.mktemp(name) / f"{name}_recipe.pth"
    torch.save(recipe_state_dict(fixture.meta), weights)
    model = load_model(weights, name, device)
    # TF32 would round convolutions to 10-bit mantissas on Ampere and later; the authors ran in float32.
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    with torch.inference_mode():
        x = preprocess(torch.from_numpy(fixture["image_bgr"])[None].to(device), model.cfg)
        output = model(x)
        end_to_end = EndToEnd(model)
        dets, protos = end_to_end.detections(x)
        result = end_to_end.from_network_input(x)
    return fixture, x.cpu(), _to_cpu(output), _to_cpu(dets), _to_cpu(result)


def _to_cpu(outputs):
    """A NamedTuple of tensors (some may be None) with every tensor on the CPU."""
    return type(outputs)(*(t.cpu() if t is not None else None for t in outputs))


def test_preprocessed_input(run):
    fixture, x, *_ = run
    assert list(x.shape) == fixture.meta["input_shape"]
    assert_close(x.flatten()[fixture["input_index"]], fixture["input_value"], 1e-4, "input")


def test_priors(run):
    fixture, _, output, *_ = run
    assert output.priors.shape == (fixture.meta["num_priors"], 4)
    assert_close(output.priors, fixture["priors"], 1e-4, "priors")


def test_head_outputs(run):
    fixture, _, output, *_ = run
    rows = fixture["prior_index"]
    assert_close(output.loc[0, rows], fixture["loc"], 1e-4, "loc")
    assert_close(torch.softmax(output.conf[0, rows], dim=-1), fixture["conf"], 2e-5, "conf")
    assert_close(output.coeffs[0, rows], fixture["mask"], 1e-4, "mask coefficients")


def test_prototypes(run):
    fixture, _, output, *_ = run
    assert list(output.protos.shape) == fixture.meta["proto_shape"]
    assert_close(output.protos.flatten()[fixture["proto_index"]], fixture["proto_value"], 1e-4, "prototypes")


def test_fast_nms_detections(run):
    fixture, _, _, dets, _ = run
    n = int(dets.num_dets[0])
    assert n == fixture.meta["num_detections"] == len(fixture["det_score"])
    classes = dets.classes[0, :n].numpy()
    boxes = dets.boxes[0, :n].numpy()
    scores = dets.scores[0, :n].numpy()
    matched = match_detections(fixture, classes, boxes, scores, 1e-4)
    ok = matched >= 0
    assert ok.sum() >= len(matched) - 2
    assert_close(scores[matched[ok]], fixture["det_score"][ok], 2e-5, "scores")
    assert_close(boxes[matched[ok]], fixture["det_box"][ok], 1e-4, "boxes")
    assert_close(dets.coeffs[0, :n].numpy()[matched[ok]], fixture["det_coef"][ok], 1e-4, "coefficients")
    assert np.all(np.diff(scores) <= 0), "detections must be sorted by score"


def test_final_image_step(run):
    fixture, _, _, dets, result = run
    height, width = fixture.meta["image_hw"]
    final = to_image(result, 0, height, width)
    matched = match_detections(fixture, final.class_ids, dets.boxes[0, : len(final)].numpy(), final.scores, 1e-4)
    ok = matched >= 0
    np.testing.assert_array_equal(final.class_ids[matched[ok]], fixture["final_class"][ok])
    assert_close(final.scores[matched[ok]], fixture["final_score"][ok], 2e-5, "final scores")
    assert_close(final.boxes[matched[ok]], fixture["final_box"][ok], 1, "final boxes (pixels)")
    theirs_masks = np.unpackbits(fixture["final_masks"], axis=-1)[..., :width].astype(bool)
    assert final.masks.shape[1:] == (height, width)
    agreement = (final.masks[matched[ok]] == theirs_masks[ok]).mean()
    assert agreement >= 0.999, f"final masks agree on {agreement:.5f} of pixels"
    assert theirs_masks[ok].any(), "the fixture's masks must not be empty for this comparison to mean anything"


def test_mask_scores(run):
    """YOLACT++ re-scoring: box score x the mask-IoU head's prediction (``final_mask_score``); for v1 models
    the mask score is the box score."""
    fixture, _, _, dets, result = run
    height, width = fixture.meta["image_hw"]
    final = to_image(result, 0, height, width)
    matched = match_detections(fixture, final.class_ids, dets.boxes[0, : len(final)].numpy(), final.scores, 1e-4)
    ok = matched >= 0
    theirs = fixture.arrays.get("final_mask_score", fixture["final_score"])
    assert_close(final.mask_scores[matched[ok]], theirs[ok], 2e-5, "mask scores")
    if "final_mask_score" in fixture.arrays:
        assert (theirs[ok] > 0).sum() >= 10, "the fixture's mask scores must not all be zero to mean anything"
        assert np.abs(final.mask_scores - final.scores).max() > 0.1, "re-scoring must change the scores"
