"""Building blocks of the RegNet backbone: the stem, the SE unit, the bottleneck.

Attribute names follow mmdet's ResNet/RegNet (``conv1``/``bn1``...,
``downsample.0``/``.1``) so mmdet checkpoints load unchanged; the SE unit is
the only addition (``se.fc1``/``se.fc2``, RegNetY). A deformable 3x3 conv
(mmdet's ``dcn``) is mmcv's layer, keyed ``conv2.weight``/``conv2.conv_offset.*``
as in mmdet.
"""
from typing import Dict, Optional

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmcv.cnn import build_conv_layer, build_norm_layer
from torch import Tensor


def conv3x3(channels: int, stride: int, dilation: int, groups: int,
            dcn: Optional[Dict] = None) -> nn.Module:
    """The bottleneck's grouped 3x3 conv: ``nn.Conv2d``, or mmcv's deformable conv for ``dcn``.

    Args:
        channels: Input and output channels.
        stride: Its stride.
        dilation: Its dilation (and padding).
        groups: Its groups.
        dcn: An mmcv conv config such as ``dict(type='DCNv2', deform_groups=1)``
            (mmdet's ``fallback_on_stride`` already removed), or None.
    """
    if dcn is None:
        return nn.Conv2d(channels, channels, 3, stride=stride, padding=dilation,
                         dilation=dilation, groups=groups, bias=False)
    import mmcv.ops  # noqa: F401 - registers DCN/DCNv2; compiled ops, loaded only when asked for
    return build_conv_layer(dcn, channels, channels, 3, stride=stride, padding=dilation,
                            dilation=dilation, groups=groups, bias=False)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: channel gates from global context.

    Args:
        channels: Channels of the gated tensor.
        se_channels: Width of the squeeze layer.

    Shape:
        ``(N, channels, H, W) -> (N, channels, H, W)``
    """

    def __init__(self, channels: int, se_channels: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, se_channels, 1, bias=True)
        self.fc2 = nn.Conv2d(se_channels, channels, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        """Scales each channel of ``x`` by a gate in (0, 1)."""
        s = x.mean((2, 3), keepdim=True)
        s = self.fc2(torch.relu(self.fc1(s)))
        return x * torch.sigmoid(s)


class Bottleneck(nn.Module):
    """RegNet's residual bottleneck: 1x1, grouped 3x3 (+SE), 1x1, plus shortcut.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        mid_channels: Bottleneck channels (``out_channels * bot_mul``).
        groups: Groups of the 3x3 conv.
        stride: Stride of the block (the projection shortcut's and the 3x3 conv's).
        dilation: Dilation of the 3x3 conv.
        se_channels: SE squeeze width, 0 for none.
        norm_cfg: mmcv norm config.
        with_cp: Recompute this block in backward to save memory.
        stride_on_1x1: Put the stride on the first 1x1 conv instead of the 3x3
            (mmdet's ``style='caffe'``).
        dcn: mmcv config of a deformable 3x3 conv (see :func:`conv3x3`), or None.

    Shape:
        ``(N, in_channels, H, W) -> (N, out_channels, ceil(H/stride), ceil(W/stride))``
    """

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int,
                 groups: int, stride: int = 1, dilation: int = 1, se_channels: int = 0,
                 norm_cfg: Optional[Dict] = None, with_cp: bool = False,
                 stride_on_1x1: bool = False, dcn: Optional[Dict] = None) -> None:
        super().__init__()
        norm_cfg = norm_cfg or dict(type='BN')
        self.with_cp = with_cp
        stride1, stride2 = (stride, 1) if stride_on_1x1 else (1, stride)
        self.conv1 = nn.Conv2d(in_channels, mid_channels, 1, stride=stride1, bias=False)
        self.norm1_name, norm1 = build_norm_layer(norm_cfg, mid_channels, postfix=1)
        self.add_module(self.norm1_name, norm1)
        self.conv2 = conv3x3(mid_channels, stride2, dilation, groups, dcn)
        self.norm2_name, norm2 = build_norm_layer(norm_cfg, mid_channels, postfix=2)
        self.add_module(self.norm2_name, norm2)
        self.se = SqueezeExcite(mid_channels, se_channels) if se_channels else None
        self.conv3 = nn.Conv2d(mid_channels, out_channels, 1, bias=False)
        self.norm3_name, norm3 = build_norm_layer(norm_cfg, out_channels, postfix=3)
        self.add_module(self.norm3_name, norm3)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                build_norm_layer(norm_cfg, out_channels)[1])

    @property
    def norm3(self) -> nn.Module:
        """The last norm of the residual branch (zero-initialised by default)."""
        return getattr(self, self.norm3_name)

    def _residual(self, x: Tensor) -> Tensor:
        out = self.relu(getattr(self, self.norm1_name)(self.conv1(x)))
        out = self.relu(getattr(self, self.norm2_name)(self.conv2(out)))
        if self.se is not None:
            out = self.se(out)
        out = self.norm3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + shortcut

    def forward(self, x: Tensor) -> Tensor:
        """Applies the block (recomputed in backward when ``with_cp``)."""
        if self.with_cp and x.requires_grad:
            out = cp.checkpoint(self._residual, x, use_reentrant=False)
        else:
            out = self._residual(x)
        return self.relu(out)
