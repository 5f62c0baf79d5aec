"""Folding the BatchNorms of necks, heads and whole detectors into their convs.

A RegNet's own folding is :mod:`mmregnet.models.fusion`
(``RegNet.switch_to_deploy``); this module walks any network. mmcv's
``fuse_conv_bn`` walks in float32, skips ``ConvTranspose2d`` (SECOND-FPN's
deconvs) and folds a ``ConvModule``'s norm whatever its ``order``, so the
walk below is ours.
"""
from typing import Tuple

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from torch.nn.modules.batchnorm import _BatchNorm

from ..models.blocks import Bottleneck
from ..models.fusion import Conv, check_batchnorm, fold_pair, fuse_bottleneck


def bn_scale_shift(norm: _BatchNorm) -> Tuple[torch.Tensor, torch.Tensor]:
    """The eval-mode BatchNorm as ``y = x * scale + shift`` per channel, in float64.

    Args:
        norm: A BatchNorm (BN, SyncBN, mmcv's naiveSyncBN) with running statistics.

    Returns:
        ``(scale, shift)``, float64 vectors over the channels.

    Raises:
        TypeError: If ``norm`` is not a BatchNorm.
        ValueError: If it has no running statistics.
    """
    check_batchnorm(norm)
    inv_std = torch.rsqrt(norm.running_var.double() + norm.eps)
    weight = norm.weight.double() if norm.weight is not None else 1.0
    bias = norm.bias.double() if norm.bias is not None else 0.0
    scale = weight * inv_std
    return scale, bias - norm.running_mean.double() * scale


def fuse_conv_bn(module: nn.Module) -> int:
    """Folds BatchNorms into the convs before them anywhere in ``module``, in place.

    Handles mmcv's ``ConvModule`` (conv then norm in its ``order``), this
    package's RegNet bottleneck and ``nn.Sequential`` runs of conv then
    BatchNorm (SECOND-FPN's deconv blocks). Other norms are left in place.

    Args:
        module: A neck, a head, or a whole network.

    Returns:
        How many BatchNorms were folded.
    """
    folded = 0
    for child in list(module.modules()):
        if isinstance(child, Bottleneck):
            folded += fuse_bottleneck(child)
        elif isinstance(child, ConvModule) and child.with_norm and isinstance(child.conv, Conv):
            order = tuple(child.order)
            if order.index('conv') + 1 == order.index('norm'):
                folded += fold_pair(child, 'conv', child.norm_name)
        elif isinstance(child, nn.Sequential):
            names = list(child._modules)
            for prev, name in zip(names, names[1:]):
                if isinstance(child._modules[prev], Conv):
                    folded += fold_pair(child, prev, name)
    return folded
