"""The inference ("deploy") form of a RegNet: BatchNorms folded into convs, channels-last.

Deploying folds every BatchNorm into the convolution before it (the conv gains
a bias, the norm becomes :class:`torch.nn.Identity`) and moves the weights to
channels-last memory format, where oneDNN runs 1x1 and grouped convs without
reordering tensors on every call. The forward is the training module's own;
the outputs equal the eval-mode model's up to float rounding. It is one-way:
the running statistics are gone, so a deployed model cannot be trained as the
original. Necks and heads are folded by :func:`mmregnet.deploy.fuse_conv_bn`.

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
from typing import Optional

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils.fusion import fuse_conv_bn_weights

from ..errors import InputError
from .blocks import Bottleneck

Conv = (nn.Conv2d, nn.ConvTranspose2d)


def _double(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if t is None else t.detach().double()


def check_batchnorm(norm: nn.Module) -> None:
    """Raises TypeError unless ``norm`` is a BatchNorm, ValueError if it has no running stats."""
    if not isinstance(norm, _BatchNorm):
        raise TypeError(f'only a BatchNorm folds into a conv, got {type(norm).__name__}')
    if norm.running_mean is None or norm.running_var is None:
        raise ValueError(f'{type(norm).__name__} without running statistics '
                         '(track_running_stats=False) normalises by batch statistics '
                         'and cannot be folded into a conv')


def fold_bn(conv: nn.Module, norm: _BatchNorm) -> nn.Module:
    """A copy of ``conv`` that computes ``norm(conv(x))`` of the eval-mode norm.

    torch's ``fuse_conv_bn_weights``, called in float64 so that folding adds
    no error beyond the final rounding to the conv's dtype. The inputs are
    left untouched.

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
    check_batchnorm(norm)
    if norm.num_features != conv.out_channels:
        raise ValueError(f'the norm has {norm.num_features} channels but the conv has '
                         f'{conv.out_channels} output channels')
    transpose = isinstance(conv, nn.ConvTranspose2d)
    if transpose and conv.groups != 1:  # its weight is (in, out / groups, kh, kw)
        raise TypeError(f'fold_bn folds a ConvTranspose2d only with groups=1, '
                        f'got groups={conv.groups}')
    weight, bias = fuse_conv_bn_weights(
        _double(conv.weight), _double(conv.bias), _double(norm.running_mean),
        _double(norm.running_var), norm.eps, _double(norm.weight), _double(norm.bias),
        transpose=transpose)
    fused = copy.deepcopy(conv)
    dtype, grad = conv.weight.dtype, conv.weight.requires_grad
    fused.weight = nn.Parameter(weight.detach().to(dtype), requires_grad=grad)
    fused.bias = nn.Parameter(bias.detach().to(dtype), requires_grad=grad)
    return fused


def fold_pair(parent: nn.Module, conv_name: str, norm_name: str) -> bool:
    """Folds ``parent.<norm_name>`` into ``parent.<conv_name>`` if a BatchNorm; says if it did."""
    norm = getattr(parent, norm_name)
    if not isinstance(norm, _BatchNorm):
        return False
    setattr(parent, conv_name, fold_bn(getattr(parent, conv_name), norm))
    setattr(parent, norm_name, nn.Identity())
    return True


def fuse_bottleneck(block: Bottleneck) -> int:
    """Folds each BatchNorm of a RegNet :class:`~mmregnet.models.blocks.Bottleneck` into its
    conv, in place (other norms stay); returns how many were folded."""
    folded = sum(fold_pair(block, f'conv{i}', getattr(block, f'norm{i}_name')) for i in (1, 2, 3))
    if block.downsample is not None:
        folded += fold_pair(block.downsample, '0', '1')
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

    Raises:
        InputError: Deformable convs (``dcn``) built in some stage; nothing is folded.
    """
    if getattr(model, 'deploy', False):
        return model
    deformable = [type(block.conv2).__name__ for name in model.res_layers
                  for block in getattr(model, name) if not isinstance(block.conv2, nn.Conv2d)]
    if deformable:
        raise InputError(f'switch_to_deploy folds BatchNorms into plain convolutions; this '
                         f'backbone has {len(deformable)} deformable ones ({deformable[0]}, '
                         f'dcn={getattr(model, "dcn", None)!r}): deploy it as it is, or '
                         f'without dcn')
    model.eval()
    if model.with_stem:
        fold_pair(model, 'conv1', model.norm1_name)
    for name in model.res_layers:
        for block in getattr(model, name):
            fuse_bottleneck(block)
    model.to(memory_format=torch.channels_last)
    model.deploy = True
    return model
