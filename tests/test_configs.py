"""Every named config builds the model the reference describes: parameters, state-dict keys, priors, shapes."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from yolact import CONFIGS, Yolact, YolactConfig, get_config
from yolact.priors import feature_sizes, make_priors

# name: (parameters in millions, state-dict keys, priors), from the reference's table.
REFERENCE = {
    "yolact_base": (50.16, 660, 19248),
    "yolact_resnet50": (31.16, 354, 19248),
    "yolact_darknet53": (47.78, 348, 19248),
    "yolact_im400": (50.16, 660, 10077),
    "yolact_im700": (50.16, 660, 30963),
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_reference_configs(name):
    params_m, num_keys, num_priors = REFERENCE[name]
    model = Yolact(get_config(name))
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == params_m
    assert len(model.state_dict()) == num_keys
    assert make_priors(model.cfg, feature_sizes(model.cfg)).shape == (num_priors, 4)


@pytest.mark.parametrize(
    "name, num_keys, deformable",
    [
        # [0, 4, 23, 3] with interval 3: stage 3 blocks 0 and 3, stage 4 blocks 0, 3, ..., 21, stage 5 block 0.
        ("yolact_plus_base", 705, {1: [0, 3], 2: [0, 3, 6, 9, 12, 15, 18, 21], 3: [0]}),
        ("yolact_plus_resnet50", 405, {1: [0, 1, 2, 3], 2: [0, 1, 2, 3, 4, 5], 3: [0, 1, 2]}),
    ],
)
def test_yolact_plus_configs(name, num_keys, deformable):
    from yolact.deform_conv import ModulatedDeformConv2d

    cfg = get_config(name)
    model = Yolact(cfg)
    assert len(model.state_dict()) == num_keys and cfg.num_anchors == 9
    found = {
        stage: [i for i, block in enumerate(layer) if isinstance(block.conv2, ModulatedDeformConv2d)]
        for stage, layer in enumerate(model.backbone.layers)
    }
    assert {s: blocks for s, blocks in found.items() if blocks} == deformable
    priors = make_priors(cfg, feature_sizes(cfg))
    assert priors.shape == (57744, 4)
    # The first cell of P3: scales 24 * 2^(j/3), each with aspect ratios 1, 1/2, 2 (w = s sqrt(r), h = s / sqrt(r)).
    cell = priors[:9, 2:].double() * 550
    for j in range(3):
        s = 24 * 2 ** (j / 3)
        for r_index, r in enumerate((1.0, 0.5, 2.0)):
            assert torch.allclose(cell[3 * j + r_index], torch.tensor([s * r**0.5, s / r**0.5], dtype=torch.float64), atol=1e-4)


def test_im400_and_im700_scales():
    assert get_config("yolact_im400").pred_scales == (17, 34, 69, 139, 279)
    assert get_config("yolact_im700").pred_scales == (30, 61, 122, 244, 488)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_config_builds(name):
    cfg = get_config(name)
    model = Yolact(cfg)
    head = model.prediction_layers[0]
    assert head.conf_layer.out_channels == cfg.num_anchors * (cfg.num_classes + 1)
    assert model.semantic_seg_conv.out_channels == cfg.num_classes


@pytest.mark.parametrize("name", ["yolact_tiny", "yolact_small"])
def test_forward_shapes(name):
    cfg = get_config(name)
    model = Yolact(cfg).eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 3, cfg.max_size, cfg.max_size))
    levels = feature_sizes(cfg)
    num_priors = sum(h * w for h, w in levels) * cfg.num_anchors
    proto = 2 * levels[0][0]
    assert out.loc.shape == (2, num_priors, 4)
    assert out.conf.shape == (2, num_priors, cfg.num_classes + 1)
    assert out.coeffs.shape == (2, num_priors, cfg.mask_dim)
    assert out.priors.shape == (num_priors, 4)
    assert out.protos.shape == (2, proto, proto, cfg.mask_dim)
    assert out.segm is None
    assert out.coeffs.abs().max() <= 1 and out.protos.min() >= 0  # tanh and ReLU
    model.train()
    assert model(torch.zeros(2, 3, cfg.max_size, cfg.max_size)).segm.shape == (2, cfg.num_classes, *levels[0])


def test_priors_layout():
    """Row-major cells, then the three square anchors s, s/sqrt2, s*sqrt2 divided by max_size."""
    cfg = get_config("yolact_base")
    priors = make_priors(cfg, feature_sizes(cfg))
    first = priors[:6]
    torch.testing.assert_close(first[:3, :2], torch.full((3, 2), 0.5 / 69))
    torch.testing.assert_close(first[3, :2], torch.tensor([1.5 / 69, 0.5 / 69]))
    expected_w = torch.tensor([24, 24 * 0.5**0.5, 24 * 2**0.5]) / 550
    torch.testing.assert_close(first[:3, 2], expected_w)
    torch.testing.assert_close(first[:3, 3], expected_w)  # square anchors
    assert torch.allclose(priors[69 * 69 * 3, 2], torch.tensor(48 / 550))  # first prior of P4


def test_config_is_immutable_and_serialisable():
    cfg = get_config("yolact_small", class_names=("a", "b"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.max_size = 10
    assert cfg.num_classes == 2
    assert YolactConfig.from_dict(cfg.to_dict()) == cfg
    assert get_config("yolact_small").num_classes == 5  # the named config is untouched
    with pytest.raises(KeyError, match="unknown config"):
        get_config("yolact_nope")


def test_from_scratch_configs_keep_the_550_anchor_scales_and_train_with_adamw():
    """Anchors scaled down with a small input (8 px on a stride-8 grid at 192) leave objects unmatched."""
    for name in ("yolact_small", "yolact_tiny"):
        cfg = get_config(name)
        assert cfg.pred_scales == (24, 48, 96, 192, 384) and cfg.optimizer == "adamw"
        assert cfg.photometric_p == 0 and cfg.zoom_out_max == 1
    for name in ("yolact_base", "yolact_resnet50", "yolact_darknet53", "yolact_im400", "yolact_im700"):
        cfg = get_config(name)
        assert cfg.optimizer == "sgd" and cfg.lr == 1e-3 and cfg.weight_decay == 5e-4  # the authors' recipe


def test_unknown_optimizer_is_rejected():
    with pytest.raises(ValueError, match="optimizer must be one of"):
        get_config("yolact_small", optimizer="lion")
