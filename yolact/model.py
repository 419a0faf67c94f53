"""YOLACT: backbone, FPN, protonet and the shared prediction head, with the authors' state-dict layout."""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import build_backbone
from .config import YolactConfig
from .priors import make_priors


class YolactOutput(NamedTuple):
    """Raw network outputs for a batch of B images with P priors and C foreground classes.

    - loc [B, P, 4]: box regression offsets (see ``box_utils.decode``)
    - conf [B, P, C + 1]: class logits, background first (softmax them for scores)
    - coeffs [B, P, k]: mask coefficients, after tanh
    - priors [P, 4]: anchors, center-size, normalised
    - protos [B, Hp, Wp, k]: prototype masks, after ReLU, channels last
    - segm [B, C, H3, W3]: semantic segmentation logits on P3 (training only, else None)
    """

    loc: torch.Tensor
    conf: torch.Tensor
    coeffs: torch.Tensor
    priors: torch.Tensor
    protos: torch.Tensor
    segm: Optional[torch.Tensor]


class FPN(nn.Module):
    """Feature pyramid P3..P7 from C3..C5.

    Lateral convs are stored in reverse (``lat_layers.0`` takes C5); ``pred_layers.i`` makes P(5-i). The
    top-down path upsamples the running lateral sum (before the pred conv) to the exact size of the next
    level. P3..P5 get a ReLU; P6 and P7 are stride-2 convs on P5 and P6 without one.
    """

    def __init__(self, in_channels: list[int], channels: int, num_downsample: int = 2):
        super().__init__()
        self.lat_layers = nn.ModuleList([nn.Conv2d(c, channels, 1) for c in reversed(in_channels)])
        self.pred_layers = nn.ModuleList([nn.Conv2d(channels, channels, 3, padding=1) for _ in in_channels])
        self.downsample_layers = nn.ModuleList([nn.Conv2d(channels, channels, 3, padding=1, stride=2) for _ in range(num_downsample)])

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """features: C3..C5 [B, Ci, Hi, Wi] -> P3..P7 [B, channels, Hj, Wj]."""
        num_levels = len(features)
        laterals: list[torch.Tensor] = [features[0]] * num_levels
        x: Optional[torch.Tensor] = None
        for i, lat_layer in enumerate(self.lat_layers):
            j = num_levels - 1 - i
            lateral = lat_layer(features[j])
            if x is not None:
                x = F.interpolate(x, size=features[j].shape[-2:], mode="bilinear", align_corners=False)
                lateral = x + lateral
            x = lateral
            laterals[j] = x
        outs = [F.relu(self.pred_layers[num_levels - 1 - j](laterals[j])) for j in range(num_levels)]
        for downsample in self.downsample_layers:
            outs.append(downsample(outs[-1]))
        return outs


def make_protonet(in_channels: int, channels: int, mask_dim: int) -> nn.Sequential:
    """Three 3x3 convs, x2 bilinear upsample, a 3x3 conv, a 1x1 conv to ``mask_dim``, then ReLU.

    The layout keeps the authors' indices (convs at 0, 2, 4, 8, 10) so checkpoints load by key; index 7 is
    their ReLU after the upsample, a no-op on non-negative input.
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(channels, channels, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(channels, channels, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
        nn.ReLU(inplace=True),
        nn.Conv2d(channels, channels, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(channels, mask_dim, 1),
        nn.ReLU(inplace=True),
    )


class PredictionHead(nn.Module):
    """One head shared by every FPN level: a 3x3 conv + ReLU, then parallel box/class/coefficient convs.

    Input [B, C, H, W] -> loc [B, H*W*A, 4], conf [B, H*W*A, num_classes + 1], coeffs [B, H*W*A, k] (tanh),
    flattened row-major over cells, then anchor.
    """

    def __init__(self, channels: int, num_anchors: int, num_classes: int, mask_dim: int):
        super().__init__()
        self.num_logits = num_classes + 1
        self.mask_dim = mask_dim
        self.upfeature = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True))
        self.bbox_layer = nn.Conv2d(channels, num_anchors * 4, 3, padding=1)
        self.conf_layer = nn.Conv2d(channels, num_anchors * self.num_logits, 3, padding=1)
        self.mask_layer = nn.Conv2d(channels, num_anchors * mask_dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.upfeature(x)
        batch = x.shape[0]
        loc = self.bbox_layer(x).permute(0, 2, 3, 1).reshape(batch, -1, 4)
        conf = self.conf_layer(x).permute(0, 2, 3, 1).reshape(batch, -1, self.num_logits)
        coeffs = torch.tanh(self.mask_layer(x).permute(0, 2, 3, 1).reshape(batch, -1, self.mask_dim))
        return loc, conf, coeffs


class MaskIoUNet(nn.Module):
    """YOLACT++'s fast mask re-scoring network: the IoU each class's ground truth would have with a mask.

    Stride-2 3x3 convolutions without padding (``cfg.maskiou_channels``), a 1x1 convolution to the classes,
    each followed by a ReLU, then a global max-pool. Keys ``maskiou_net.{0, 2, ...}`` (the ReLUs between).

    Input [N, 1, Hp, Wp] cropped mask probabilities at prototype resolution -> [N, num_classes].
    """

    def __init__(self, channels: tuple[int, ...], num_classes: int):
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 1
        for out_channels in channels:
            layers += [nn.Conv2d(in_channels, out_channels, 3, stride=2), nn.ReLU(inplace=True)]
            in_channels = out_channels
        layers += [nn.Conv2d(in_channels, num_classes, 1), nn.ReLU(inplace=True)]
        self.maskiou_net = nn.Sequential(*layers)

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        return self.maskiou_net(masks).amax(dim=(2, 3))

    def before_relu(self, masks: torch.Tensor) -> torch.Tensor:
        """The output without the final ReLU [N, num_classes] (``forward`` is its ReLU: the max-pool commutes
        with it)."""
        return self.maskiou_net[:-1](masks).amax(dim=(2, 3))


class Yolact(nn.Module):
    """The YOLACT network (v1, and YOLACT++ when the config asks for deformable convolutions and
    ``use_maskiou``). Input: a preprocessed batch [B, 3, S, S] (see ``yolact.preprocess``).

    Outputs a :class:`YolactOutput`; detections come from ``yolact.detection.detect``.
    """

    def __init__(self, cfg: YolactConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = build_backbone(cfg)
        c3_c5 = self.backbone.channels[-3:]
        self.proto_net = make_protonet(cfg.fpn_channels, cfg.proto_channels, cfg.mask_dim)
        self.fpn = FPN(c3_c5, cfg.fpn_channels)
        # A ModuleList of one keeps the authors' key prefix ``prediction_layers.0``.
        self.prediction_layers = nn.ModuleList([PredictionHead(cfg.fpn_channels, cfg.num_anchors, cfg.num_classes, cfg.mask_dim)])
        self.semantic_seg_conv = nn.Conv2d(cfg.fpn_channels, cfg.num_classes, 1)
        # Used by the re-scoring in ``yolact.inference`` and by the mask-IoU loss, not by forward.
        self.maskiou_net = MaskIoUNet(cfg.maskiou_channels, cfg.num_classes) if cfg.use_maskiou else None
        self.bn_frozen = False

    def forward(self, images: torch.Tensor) -> YolactOutput:
        features = self.fpn(self.backbone(images)[-3:])
        protos = self.proto_net(features[0]).permute(0, 2, 3, 1).contiguous()
        head = self.prediction_layers[0]
        per_level = [head(f) for f in features]
        loc, conf, coeffs = (torch.cat(parts, dim=1) for parts in zip(*per_level))
        level_sizes = tuple((int(f.shape[-2]), int(f.shape[-1])) for f in features)
        priors = make_priors(self.cfg, level_sizes).to(images.device)
        segm = self.semantic_seg_conv(features[0]) if self.training else None
        return YolactOutput(loc, conf, coeffs, priors, protos, segm)

    def freeze_bn(self, frozen: bool = True) -> None:
        """Keep BatchNorm statistics and affine parameters fixed (small per-device batches), also across
        later ``train()`` calls."""
        self.bn_frozen = frozen
        for module in self._batch_norms():
            module.weight.requires_grad_(not frozen)
            module.bias.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> "Yolact":
        super().train(mode)
        if self.bn_frozen:
            for module in self._batch_norms():
                module.eval()
        return self

    def _batch_norms(self) -> list[nn.Module]:
        return [m for m in self.modules() if isinstance(m, (nn.BatchNorm2d, nn.SyncBatchNorm))]
