"""Backbones: ResNet (torchvision's blocks) and DarkNet-53, with the authors' state-dict key layout.

Both return the feature maps of their stages; YOLACT feeds the last three (C3, C4, C5) to the FPN.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from .config import YolactConfig
from .deform_conv import ModulatedDeformConv2d


class ResNetBackbone(nn.Module):
    """ResNet without its classifier, keys ``conv1``, ``bn1``, ``layers.{0..3}.*``.

    torchvision's ResNet puts the stride on the 3x3 convolution of a bottleneck (ResNet v1.5), exactly as
    the authors' backbone does, so its blocks are reused as they are.

    YOLACT++ replaces the 3x3 ``conv2`` of the blocks that :func:`deformable_blocks` picks with a
    :class:`ModulatedDeformConv2d` of the same shape and stride (which, like DCNv2, has a bias).

    Input [B, 3, H, W]; outputs four maps at strides 4, 8, 16, 32 with 256/512/1024/2048 channels
    (bottleneck) or 64/128/256/512 (basic block).
    """

    def __init__(
        self,
        layers: tuple[int, ...],
        block: str = "bottleneck",
        dcn_layers: tuple[int, ...] = (0, 0, 0, 0),
        dcn_interval: int = 1,
    ):
        super().__init__()
        block_cls = {"bottleneck": Bottleneck, "basic": BasicBlock}[block]
        net = ResNet(block_cls, list(layers))
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layers = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        self.channels = [64 * 2**i * block_cls.expansion for i in range(4)]
        for stage, num_dcn in zip(self.layers, dcn_layers):
            for index in deformable_blocks(len(stage), num_dcn, dcn_interval):
                conv = stage[index].conv2
                stage[index].conv2 = ModulatedDeformConv2d(
                    conv.in_channels,
                    conv.out_channels,
                    conv.kernel_size[0],
                    conv.stride[0],
                    conv.padding[0],
                    conv.dilation[0],
                )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for layer in self.layers:
            x = layer(x)
            outs.append(x)
        return outs


def deformable_blocks(num_blocks: int, num_dcn: int, interval: int) -> list[int]:
    """Indices of a stage's blocks that get a deformable conv2, by the authors' rule: the first block when
    the whole stage is deformable, then each block ``i`` among the last ``num_dcn`` with ``i % interval == 0``
    (ResNet-101's ``[0, 4, 23, 3]`` with interval 3 gives stage 3 blocks 0 and 3, stage 4 blocks 0, 3, ... 21
    and stage 5 block 0)."""
    first = [0] if num_dcn >= num_blocks else []
    return first + [i for i in range(1, num_blocks) if i + num_dcn >= num_blocks and i % interval == 0]


def torchvision_resnet_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map an ImageNet ResNet state dict from torchvision (``layer1.*``, ``fc.*``) onto ResNetBackbone."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith("fc."):
            continue
        if key.startswith("layer"):
            stage = int(key[len("layer")]) - 1
            key = f"layers.{stage}{key[len('layerN') :]}"
        out[key] = value
    return out


def darknet_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Sequential:
    """Conv (no bias) -> BatchNorm -> LeakyReLU(0.1); keys ``0`` and ``1``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(0.1, inplace=True),
    )


class DarkNetBlock(nn.Module):
    """Residual block: 1x1 to ``channels``, 3x3 back to ``2 * channels``, plus the input."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = darknet_conv(2 * channels, channels, 1)
        self.conv2 = darknet_conv(channels, 2 * channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x)) + x


class DarkNetBackbone(nn.Module):
    """YOLOv3's DarkNet-53: keys ``_preconv.*`` and ``layers.{0..4}.*``.

    Input [B, 3, H, W]; outputs five maps at strides 2..32 with 64/128/256/512/1024 channels.
    """

    def __init__(self, layers: tuple[int, ...] = (1, 2, 8, 8, 4)):
        super().__init__()
        self._preconv = darknet_conv(3, 32, 3)
        self.layers = nn.ModuleList()
        self.channels = []
        in_channels = 32
        for i, num_blocks in enumerate(layers):
            channels = 32 * 2**i
            stage = [darknet_conv(in_channels, 2 * channels, 3, stride=2)]
            stage += [DarkNetBlock(channels) for _ in range(num_blocks)]
            self.layers.append(nn.Sequential(*stage))
            in_channels = 2 * channels
            self.channels.append(in_channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self._preconv(x)
        outs = []
        for layer in self.layers:
            x = layer(x)
            outs.append(x)
        return outs


def build_backbone(cfg: YolactConfig) -> nn.Module:
    if cfg.backbone == "resnet":
        return ResNetBackbone(cfg.backbone_layers, cfg.backbone_block, cfg.dcn_layers, cfg.dcn_interval)
    if cfg.backbone == "darknet":
        return DarkNetBackbone(cfg.backbone_layers)
    raise ValueError(f"unknown backbone {cfg.backbone!r} in config {cfg.name!r}")
