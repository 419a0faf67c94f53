"""Checkpoint loading and saving, batch prediction, and the ``python -m yolact.predict`` command."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from yolact import CheckpointError, Yolact, get_config, load_model, save_weights
from yolact.checkpoint import read_checkpoint
from yolact.inference import (
    predict,
)  # not `from yolact import predict`: once yolact.predict (the module) is imported, that name is the module

TINY = get_config("yolact_tiny")


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.pth"
    save_weights(Yolact(TINY), path)
    return path


def shapes_image(height: int, width: int, seed: int) -> np.ndarray:
    """A BGR test image: textured background with a few filled shapes."""
    rng = np.random.default_rng(seed)
    image = rng.integers(60, 120, size=(height, width, 3), dtype=np.uint8)
    for _ in range(4):
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.circle(image, center, int(rng.integers(8, min(height, width) // 3)), color, -1)
    return image


def test_round_trip_gives_identical_outputs(tiny_weights):
    original = Yolact(TINY).eval()
    original.load_state_dict(read_checkpoint(tiny_weights)[0])
    loaded = load_model(tiny_weights)  # the config comes from the checkpoint
    assert loaded.cfg == TINY
    x = torch.randn(2, 3, TINY.max_size, TINY.max_size)
    with torch.no_grad():
        for a, b in zip(original(x), loaded(x)):
            if a is not None:
                assert torch.equal(a, b)


def test_bare_state_dict_with_legacy_keys_loads(tmp_path):
    """The authors' files are bare state dicts; their loader drops old ``backbone.layerN`` aliases and
    FPN downsample layers beyond the config's two."""
    model = Yolact(TINY)
    state = model.state_dict()
    state["backbone.layer1.0.conv1.weight"] = torch.zeros(1)
    state["fpn.downsample_layers.2.weight"] = torch.zeros(1)
    path = tmp_path / "authors_style.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="holds no config"):
        load_model(path)
    loaded = load_model(path, "yolact_tiny")
    assert torch.equal(loaded.fpn.lat_layers[0].weight, model.fpn.lat_layers[0].weight)


def test_mismatched_checkpoint_names_keys_and_lookalike(tmp_path):
    path = tmp_path / "r50.pth"
    torch.save(Yolact(get_config("yolact_resnet50")).state_dict(), path)
    with pytest.raises(CheckpointError) as err:
        load_model(path, "yolact_darknet53")
    message = str(err.value)
    assert "\n" not in message
    assert "does not fit config 'yolact_darknet53'" in message
    assert "missing keys" in message and "unexpected keys" in message
    assert "looks like yolact_resnet50 (resnet [3, 4, 6, 3], FPN 256, 80 classes, 354 keys)" in message


@pytest.mark.parametrize(
    "name, v1_name, num_keys, num_dcn",
    [("yolact_plus_resnet50", "yolact_resnet50", 405, 13), ("yolact_plus_base", "yolact_base", 705, 11)],
)
def test_released_yolact_plus_checkpoint_loads_by_key_with_its_config_from_the_file_name(tmp_path, name, v1_name, num_keys, num_dcn):
    """The authors' YOLACT++ files are bare state dicts named ``<config>_<epoch>_<iteration>.pth``; the key
    names and count come from the authors' fixture (ResNet-50) and their DCN rule (ResNet-101)."""
    model = Yolact(get_config(name))
    state = model.state_dict()
    assert len(state) == num_keys
    assert sum(k.endswith("conv2.conv_offset_mask.weight") for k in state) == num_dcn
    if name == "yolact_plus_resnet50":
        authors = json.loads(str(np.load("tests/data/yolact_plus_resnet50.npz")["meta"]))["state_dict"]
        assert {k: list(v.shape) for k, v in state.items()} == dict(authors)
    path = tmp_path / f"{name}_54_800000.pth"
    torch.save(state, path)
    loaded = load_model(path)
    assert loaded.cfg == get_config(name)
    assert torch.equal(loaded.maskiou_net.maskiou_net[0].weight, model.maskiou_net.maskiou_net[0].weight)
    with pytest.raises(CheckpointError, match=f"does not fit config '{v1_name}'.* looks like {name} \\(resnet .*, DCN,"):
        load_model(path, v1_name)


def test_wrong_class_count_is_a_shape_mismatch(tiny_weights):
    with pytest.raises(CheckpointError, match="wrong shape keys .*conf_layer"):
        load_model(tiny_weights, get_config("yolact_tiny", class_names=("a", "b")))


def test_unreadable_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_model(tmp_path / "nope.pth", "yolact_tiny")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_model(garbage, "yolact_tiny")


def test_batch_prediction_equals_one_image_at_a_time(tiny_weights):
    """Same detections as sets: a random model's scores nearly tie, so float noise of 1e-7 between batch
    sizes may swap neighbours' order or which near-tie takes the last of the 100 places."""
    model = load_model(tiny_weights)
    images = [shapes_image(96, 160, 0), shapes_image(200, 120, 1), shapes_image(128, 128, 2)]
    together = predict(model, images)
    assert sum(len(d) for d in together) > 0
    for image, batched in zip(images, together):
        (alone,) = predict(model, [image])
        assert len(alone) == len(batched)
        assert batched.masks.shape[1:] == image.shape[:2]
        cut = alone.scores.min(initial=1.0) + 1e-5
        for i in range(len(alone)):
            same = (
                (batched.class_ids == alone.class_ids[i])
                & (np.abs(batched.scores - alone.scores[i]) <= 1e-5)
                & (np.abs(batched.boxes - alone.boxes[i]).max(axis=1) <= 1)
            )
            if not same.any():
                assert alone.scores[i] <= cut, f"detection {i} of the single-image run is missing in the batch"
                continue
            j = np.flatnonzero(same)[0]
            assert (alone.masks[i] != batched.masks[j]).mean() < 1e-3


def run_predict(*args):
    return subprocess.run([sys.executable, "-m", "yolact.predict", *map(str, args)], capture_output=True, text=True, timeout=300)


def test_predict_command_writes_overlay_and_json(tiny_weights, tmp_path):
    paths = []
    for i, (h, w) in enumerate([(120, 160), (90, 90)]):
        paths.append(tmp_path / f"img{i}.png")
        cv2.imwrite(str(paths[-1]), shapes_image(h, w, i))
    out = tmp_path / "out"
    result = run_predict(*paths, "--weights", tiny_weights, "--out", out, "--score-threshold", "0")
    assert result.returncode == 0, result.stderr
    for path in paths:
        overlay = cv2.imread(str(out / f"{path.stem}.png"))
        original = cv2.imread(str(path))
        assert overlay.shape == original.shape
        record = json.loads((out / f"{path.stem}.json").read_text())
        assert record["height"], record["width"] == original.shape[:2]
        assert record["detections"], "a random model at score threshold 0 detects something"
        first = record["detections"][0]
        assert first["class_name"] in TINY.class_names
        assert not np.array_equal(overlay, original)  # something was drawn
    assert sorted(p.name for p in out.iterdir()) == ["img0.json", "img0.png", "img1.json", "img1.png"]


def test_predict_command_on_a_yolact_plus_checkpoint_writes_mask_scores_and_prototypes(tmp_path):
    cfg = get_config("yolact_plus_tiny")
    from yolact.recipe import recipe_model

    weights = tmp_path / "plus.pth"
    save_weights(recipe_model(cfg), weights)  # recipe weights fill every slot and make mask scores non-zero
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), shapes_image(100, 140, 3))
    out = tmp_path / "out"
    result = run_predict(image, "--weights", weights, "--out", out, "--score-threshold", "0", "--prototypes")
    assert result.returncode == 0, result.stderr
    detections = json.loads((out / "img.json").read_text())["detections"]
    assert len(detections) == cfg.max_num_detections
    box_scores = np.array([d["score"] for d in detections])
    mask_scores = np.array([d["mask_score"] for d in detections])
    assert np.all(np.diff(box_scores) <= 0), "detections stay ranked by box score"
    assert (mask_scores > 0).any() and not np.allclose(mask_scores, box_scores), "re-scored masks"
    grid = cv2.imread(str(out / "img_prototypes.png"))
    assert grid.shape == (4 * 98 + 2, 8 * 98 + 2, 3)  # 32 prototypes, 8 to a row, 96-pixel tiles, 2-pixel gaps
    tiles = [grid[2 + r * 98 : 2 + r * 98 + 96, 2 + c * 98 : 2 + c * 98 + 96] for r in range(4) for c in range(8)]
    assert len({tile.tobytes() for tile in tiles}) > 16, "the tiles show different prototypes"


def test_predict_command_errors_are_one_line(tiny_weights, tmp_path):
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), shapes_image(64, 64, 0))
    cases = [
        ((tmp_path / "missing.png", "--weights", tiny_weights), "missing.png: no such file"),
        ((image, "--weights", tmp_path / "missing.pth"), "missing.pth: no such checkpoint file"),
        ((image, "--weights", tiny_weights, "--config", "yolact_resnet50"), "does not fit config 'yolact_resnet50'"),
    ]
    for args, expected in cases:
        result = run_predict(*args, "--out", tmp_path / "out")
        assert result.returncode == 2
        assert expected in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
