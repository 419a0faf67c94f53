"""The modulated deformable convolution of YOLACT++ (DCNv2), on ``torchvision.ops.deform_conv2d``.

It keeps DCNv2's parameters and state-dict keys (``weight``, ``bias``, ``conv_offset_mask.weight``,
``conv_offset_mask.bias``), so the authors' YOLACT++ checkpoints load by key, and needs no compiled extension:
torchvision's kernel runs forward and backward on CPU and CUDA, and exports to ONNX ``DeformConv`` (opset 19).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.ops import deform_conv2d


class ModulatedDeformConv2d(nn.Module):
    """A k x k convolution whose every tap is moved by a learnt offset and weighted by a learnt mask.

    Input [B, in_channels, H, W] -> [B, out_channels, H', W'] (H', W' as for ``nn.Conv2d`` with the same
    stride, padding and dilation). ``conv_offset_mask`` predicts 3 k² channels, split in three chunks
    (o1, o2, m): the offsets are ``cat(o1, o2)`` and the mask ``sigmoid(m)``, as DCNv2 does. The offsets and
    mask logits start at zero (a plain convolution with every tap weighted 0.5), as the authors initialise
    them.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        dilation: int = 1,
    ):
        super().__init__()
        self.stride, self.padding, self.dilation = (stride, stride), (padding, padding), (dilation, dilation)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.conv_offset_mask = nn.Conv2d(
            in_channels,
            3 * kernel_size * kernel_size,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
        )
        bound = 1 / math.sqrt(in_channels * kernel_size * kernel_size)  # DCNv2's uniform initialisation
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.zeros_(self.conv_offset_mask.weight)
        nn.init.zeros_(self.conv_offset_mask.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o1, o2, mask_logits = torch.chunk(self.conv_offset_mask(x), 3, dim=1)
        offset, mask = torch.cat((o1, o2), dim=1), torch.sigmoid(mask_logits)
        if torch.is_autocast_enabled(x.device.type):
            # torchvision's CPU kernel has no bfloat16 path: under autocast it runs in float32.
            with torch.autocast(x.device.type, enabled=False):
                return self._deform(x.float(), offset.float(), mask.float())
        return self._deform(x, offset, mask)

    def _deform(self, x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return deform_conv2d(x, offset, self.weight, self.bias, self.stride, self.padding, self.dilation, mask=mask)
