"""Checkpoint I/O: the authors' released ``.pth`` files and ours share one key layout and one loader.

A checkpoint is either a bare state dict (the authors' files, our exported weights) or a training
checkpoint, a dict holding the state dict under ``"model"`` and the config under ``"config"``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

import torch

from .config import CONFIGS, YolactConfig, get_config
from contract.files import replaced_on_success
from .model import Yolact


class CheckpointError(Exception):
    """A checkpoint that cannot be read or does not fit the model; the message is one line."""


def load_file(path: str | os.PathLike) -> Any:
    """What ``torch.save`` wrote to ``path`` (tensors only, no pickled code), with tensors saved on a GPU
    loaded onto the CPU."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__})") from None


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """(state dict, embedded config dict or None)."""
    obj = load_file(path)
    config = None
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        config = obj.get("config")
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: does not hold a state dict of tensors")
    return dict(obj), config


def drop_legacy_keys(state_dict: Mapping[str, torch.Tensor], num_downsample: int = 2) -> dict[str, torch.Tensor]:
    """Remove keys the authors' loader also drops: the old ``backbone.layerN.*`` aliases and FPN
    downsample layers beyond the ones the config uses (v1.0 files)."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith("backbone.layer") and not key.startswith("backbone.layers"):
            continue
        match = re.match(r"fpn\.downsample_layers\.(\d+)\.", key)
        if match and int(match.group(1)) >= num_downsample:
            continue
        out[key] = value
    return out


def describe_state_dict(state_dict: Mapping[str, torch.Tensor]) -> str:
    """What model a state dict looks like, e.g. ``yolact_resnet50 (resnet [3, 4, 6, 3], FPN 256, 80 classes)``."""
    keys = set(state_dict)
    if any(k.startswith("backbone._preconv") for k in keys):
        backbone = "darknet"
        stage_key = r"backbone\.layers\.(\d+)\.(\d+)\.conv1\.0\.weight"
    else:
        backbone = "resnet"
        stage_key = r"backbone\.layers\.(\d+)\.(\d+)\.conv1\.weight"
    blocks: dict[int, int] = {}
    for key in keys:
        match = re.fullmatch(stage_key, key)
        if match:
            stage, block = int(match.group(1)), int(match.group(2))
            blocks[stage] = max(blocks.get(stage, 0), block + (0 if backbone == "darknet" else 1))
    layers = [blocks[s] for s in sorted(blocks)]
    deformable = any(k.endswith("conv2.conv_offset_mask.weight") for k in keys)
    fpn = state_dict.get("fpn.lat_layers.0.weight")
    conf = state_dict.get("prediction_layers.0.conf_layer.weight")
    bbox = state_dict.get("prediction_layers.0.bbox_layer.weight")
    fpn_channels = int(fpn.shape[0]) if fpn is not None else None
    num_classes = int(conf.shape[0] // (bbox.shape[0] // 4)) - 1 if conf is not None and bbox is not None else None
    matches = [
        name
        for name, cfg in CONFIGS.items()
        if cfg.backbone == backbone
        and list(cfg.backbone_layers) == layers
        and cfg.fpn_channels == fpn_channels
        and any(cfg.dcn_layers) == deformable
    ]
    dcn = ", DCN" if deformable else ""
    shape = f"{backbone} {layers}{dcn}, FPN {fpn_channels}, {num_classes} classes, {len(keys)} keys"
    return f"{'/'.join(matches) or 'no named config'} ({shape})"


def load_state_dict_into(model: Yolact, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Load by key name, strictly; a mismatch raises one line naming missing/unexpected keys and what the
    checkpoint looks like."""
    state_dict = drop_legacy_keys(state_dict, len(model.fpn.downsample_layers))
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong_shape = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    if missing or unexpected or wrong_shape:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
            if items:
                shown = ", ".join(items[:3]) + (", ..." if len(items) > 3 else "")
                parts.append(f"{len(items)} {label} keys ({shown})")
        raise CheckpointError(
            f"{source}: does not fit config {model.cfg.name!r}: {'; '.join(parts)}; "
            f"the checkpoint looks like {describe_state_dict(state_dict)}"
        )
    model.load_state_dict(state_dict)


def config_from_file_name(path: str | os.PathLike) -> str | None:
    """The config a released checkpoint's name starts with, as the authors name them
    (``<config>_<epoch>_<iteration>.pth``, e.g. ``yolact_plus_base_54_800000.pth``), or None."""
    match = re.fullmatch(r"(.+)_\d+_\d+", Path(path).stem)
    return match.group(1) if match and match.group(1) in CONFIGS else None


def resolve_config(config: str | YolactConfig | None, embedded: Mapping[str, Any] | None, source: str) -> YolactConfig:
    """The explicit config if given (with the checkpoint's class names when it was trained from the same
    named config), else the config embedded in a training checkpoint, else the one the file is named after."""
    if isinstance(config, YolactConfig):
        return config
    embedded_cfg = YolactConfig.from_dict(embedded) if embedded else None
    if config is None:
        if embedded_cfg is not None:
            return embedded_cfg
        config = config_from_file_name(source)
        if config is None:
            raise CheckpointError(
                f"{source}: holds no config and its name is none of the authors' "
                f"(<config>_<epoch>_<iteration>.pth); name one with --config ({', '.join(CONFIGS)})"
            )
    if embedded_cfg is not None and embedded_cfg.name == config:
        return embedded_cfg
    return get_config(config)


def load_model(weights: str | os.PathLike, config: str | YolactConfig | None = None, device: str | torch.device = "cpu") -> Yolact:
    """Build the model for ``config`` (or the checkpoint's own) and load ``weights`` into it, in eval mode."""
    state_dict, embedded = read_checkpoint(weights)
    cfg = resolve_config(config, embedded, str(weights))
    model = Yolact(cfg)
    load_state_dict_into(model, state_dict, str(weights))
    return model.to(device).eval()


def save_weights(model: Yolact, path: str | os.PathLike) -> None:
    """Write the model's weights (authors' layout) plus its config, atomically."""
    with replaced_on_success(path) as tmp:
        torch.save({"model": model.state_dict(), "config": model.cfg.to_dict()}, tmp)
