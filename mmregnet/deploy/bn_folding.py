"""The inference ("deploy") form of a RegNet and of the convs around it, in plain PyTorch.

Deploying folds every BatchNorm into the convolution before it (the conv gains
a bias, the norm becomes :class:`torch.nn.Identity`) and moves the weights to
channels-last memory format, where oneDNN runs 1x1 and grouped convs without
reordering tensors on every call. The forward is the training module's own;
the outputs equal the eval-mode model's up to float rounding. It is one-way:
the running statistics are gone, so a deployed model cannot be trained as the
original.

Example:
    >>> import torch
    >>> from mmregnet import RegNet
    >>> net = RegNet('regnetx_400mf').eval()
    >>> x = torch.rand(1, 3, 64, 64)
    >>> with torch.no_grad():
    ...     ref = net(x)
    ...     fast = net.switch_to_deploy()(x)
    >>> all(torch.allclose(a, b, atol=1e-4) for a, b in zip(ref, fast))
    True
"""
import copy
from typing import Tuple

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..models.blocks import Bottleneck

Conv = (nn.Conv2d, nn.ConvTranspose2d)


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
    if not isinstance(norm, _BatchNorm):
        raise TypeError(f'only a BatchNorm folds into a conv, got {type(norm).__name__}')
    if norm.running_mean is None or norm.running_var is None:
        raise ValueError(f'{type(norm).__name__} without running statistics '
                         '(track_running_stats=False) normalises by batch statistics '
                         'and cannot be folded into a conv')
    inv_std = torch.rsqrt(norm.running_var.double() + norm.eps)
    weight = norm.weight.double() if norm.weight is not None else 1.0
    bias = norm.bias.double() if norm.bias is not None else 0.0
    scale = weight * inv_std
    return scale, bias - norm.running_mean.double() * scale


def fold_bn(conv: nn.Module, norm: _BatchNorm) -> nn.Module:
    """A copy of ``conv`` that computes ``norm(conv(x))`` of the eval-mode norm.

    The inputs are left untouched. The arithmetic is done in float64 so that
    folding adds no error beyond the final rounding to the conv's dtype.

    Args:
        conv: An ``nn.Conv2d`` (any groups) or an ``nn.ConvTranspose2d``
            (``groups=1``), with or without bias.
        norm: A BatchNorm (BN, SyncBN, mmcv's naiveSyncBN) over the conv's
            output channels, with running statistics.

    Returns:
        The folded conv, with a bias; same class, hyper-parameters, dtype and
        device as ``conv``.

    Raises:
        TypeError: If ``conv`` or ``norm`` is of a kind that cannot be folded.
        ValueError: If their channels differ or ``norm`` has no running stats.
    """
    if not isinstance(conv, Conv):
        raise TypeError(f'fold_bn expects an nn.Conv2d or nn.ConvTranspose2d, '
                        f'got {type(conv).__name__}')
    scale, shift = bn_scale_shift(norm)
    if scale.numel() != conv.out_channels:
        raise ValueError(f'the norm has {scale.numel()} channels but the conv has '
                         f'{conv.out_channels} output channels')
    if isinstance(conv, nn.ConvTranspose2d):
        if conv.groups != 1:
            raise TypeError(f'fold_bn folds a ConvTranspose2d only with groups=1, '
                            f'got groups={conv.groups}')
        # A transposed conv's weight is (in, out, kh, kw): output channels on dim 1.
        weight_scale = scale.reshape(1, -1, 1, 1)
    else:
        weight_scale = scale.reshape(-1, 1, 1, 1)
    old_bias = conv.bias.double() if conv.bias is not None else 0.0
    fused = copy.deepcopy(conv)
    dtype, grad = conv.weight.dtype, conv.weight.requires_grad
    with torch.no_grad():
        fused.weight = nn.Parameter((conv.weight.double() * weight_scale).to(dtype),
                                    requires_grad=grad)
        fused.bias = nn.Parameter((old_bias * scale + shift).to(dtype), requires_grad=grad)
    return fused


def _fold_pair(parent: nn.Module, conv_name: str, norm_name: str) -> bool:
    """Folds ``parent.<norm_name>`` into ``parent.<conv_name>`` if it is a BatchNorm."""
    norm = getattr(parent, norm_name)
    if not isinstance(norm, _BatchNorm):
        return False
    setattr(parent, conv_name, fold_bn(getattr(parent, conv_name), norm))
    setattr(parent, norm_name, nn.Identity())
    return True


def fuse_bottleneck(block: Bottleneck) -> Bottleneck:
    """Folds each BatchNorm of a RegNet :class:`~mmregnet.models.blocks.Bottleneck`, in place.

    Norms that are not BatchNorms (GroupNorm...) are kept as they are.

    Args:
        block: The block; its norms are replaced by ``nn.Identity``.

    Returns:
        ``block``.
    """
    for i in (1, 2, 3):
        _fold_pair(block, f'conv{i}', getattr(block, f'norm{i}_name'))
    if block.downsample is not None:
        _fold_pair(block.downsample, '0', '1')
    return block


def _is_conv_module(module: nn.Module) -> bool:
    """Whether ``module`` is an mmcv ``ConvModule`` with a norm (duck-typed)."""
    return (getattr(module, 'with_norm', False) and hasattr(module, 'norm_name')
            and hasattr(module, 'order') and isinstance(getattr(module, 'conv', None), Conv))


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
            before = sum(isinstance(m, _BatchNorm) for m in child.modules())
            fuse_bottleneck(child)
            folded += before - sum(isinstance(m, _BatchNorm) for m in child.modules())
        elif _is_conv_module(child):
            order = tuple(child.order)
            if order.index('conv') + 1 == order.index('norm'):
                folded += _fold_pair(child, 'conv', child.norm_name)
        elif isinstance(child, nn.Sequential):
            names = list(child._modules)
            for prev, name in zip(names, names[1:]):
                if isinstance(child._modules[prev], Conv):
                    folded += _fold_pair(child, prev, name)
    return folded


def switch_to_deploy(model: nn.Module) -> nn.Module:
    """Turns a RegNet into its inference form, in place (see the module doc).

    Sets the model to eval mode, folds the stem's and every block's
    BatchNorm into its conv, moves the weights to channels-last and sets
    ``model.deploy = True``. A second call does nothing.

    Args:
        model: A :class:`~mmregnet.models.RegNet`.

    Returns:
        ``model``.
    """
    if getattr(model, 'deploy', False):
        return model
    model.eval()
    if model.with_stem:
        _fold_pair(model, 'conv1', model.norm1_name)
    for name in model.res_layers:
        for block in getattr(model, name):
            fuse_bottleneck(block)
    model.to(memory_format=torch.channels_last)
    model.deploy = True
    return model
