"""Analytic complexity (params, multiply-adds, activations) of RegNets.

Each ``_*_cx`` function mirrors the constructor of one module in
:mod:`mmregnet.models`, layer for layer, and accumulates into a :class:`Cx`.
The counting rules are pycls's (``pycls.core.net.complexity_*``): a conv
costs ``k*k*c_in*c_out*h*w/groups`` multiply-adds, a BN has ``2*c``
parameters, every conv output counts as activations. No model is built.

Example:
    >>> complexity('regnetx_400mf')
    {'params': 5157512, 'flops': 397678568, 'acts': 3143272}
"""
from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Sequence, Tuple, Union

from .arch import ArchLike, get_arch, se_width

Size = Union[int, Tuple[int, int], Sequence[int]]


class Cx(NamedTuple):
    """Running totals plus the current feature-map size."""

    h: int
    w: int
    params: int = 0
    flops: int = 0
    acts: int = 0


def _conv_cx(cx: Cx, c_in: int, c_out: int, k: int, stride: int = 1, dilation: int = 1,
             groups: int = 1, bias: bool = False) -> Cx:
    pad = dilation * (k - 1) // 2
    h = (cx.h + 2 * pad - dilation * (k - 1) - 1) // stride + 1
    w = (cx.w + 2 * pad - dilation * (k - 1) - 1) // stride + 1
    params = k * k * c_in * c_out // groups + (c_out if bias else 0)
    flops = k * k * c_in * c_out * h * w // groups + (c_out if bias else 0)
    return Cx(h, w, cx.params + params, cx.flops + flops, cx.acts + c_out * h * w)


def _norm_cx(cx: Cx, c: int) -> Cx:
    return cx._replace(params=cx.params + 2 * c)


def _se_cx(cx: Cx, c: int, c_se: int) -> Cx:
    pooled = cx._replace(h=1, w=1)
    pooled = _conv_cx(pooled, c, c_se, 1, bias=True)
    pooled = _conv_cx(pooled, c_se, c, 1, bias=True)
    return pooled._replace(h=cx.h, w=cx.w)


def _bottleneck_cx(cx: Cx, c_in: int, c_out: int, stride: int, dilation: int,
                   mid: int, groups: int, c_se: int) -> Cx:
    if stride != 1 or c_in != c_out:
        shortcut = _norm_cx(_conv_cx(cx, c_in, c_out, 1, stride), c_out)
        cx = shortcut._replace(h=cx.h, w=cx.w)  # a parallel branch: the size goes on from the input
    cx = _norm_cx(_conv_cx(cx, c_in, mid, 1), mid)
    cx = _norm_cx(_conv_cx(cx, mid, mid, 3, stride, dilation, groups), mid)
    if c_se:
        cx = _se_cx(cx, mid, c_se)
    return _norm_cx(_conv_cx(cx, mid, c_out, 1), c_out)


def anynet_complexity(widths: Sequence[int], depths: Sequence[int],
                      group_widths: Sequence[int], bot_muls: Sequence[float],
                      se_ratio: Optional[float] = None, input_size: Size = 224,
                      num_classes: Optional[int] = 1000, in_channels: int = 3,
                      with_stem: bool = True, stem_channels: int = 32,
                      strides: Optional[Sequence[int]] = None,
                      dilations: Optional[Sequence[int]] = None) -> Dict[str, int]:
    """Params, multiply-adds and activations of a net given stage by stage.

    The general (AnyNet) form: any per-stage widths, depths, group widths and
    bottleneck ratios. :func:`complexity` derives these from a RegNet arch.

    Args:
        widths: Output channels of each stage.
        depths: Blocks of each stage.
        group_widths: Group width of each stage's 3x3 conv.
        bot_muls: Bottleneck ratio of each stage.
        se_ratio: SE width as a fraction of each block's input width, or None.
        input_size, num_classes, in_channels, with_stem, stem_channels, strides,
            dilations: As in :func:`complexity`.

    Returns:
        ``{'params': int, 'flops': int, 'acts': int}``; flops are multiply-adds.
    """
    h, w = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    cx, c = Cx(h, w), in_channels
    strides = strides or (2,) * len(widths)
    dilations = dilations or (1,) * len(widths)
    if with_stem:
        cx = _norm_cx(_conv_cx(cx, c, stem_channels, 3, 2), stem_channels)
        c = stem_channels
    for i, (width, depth) in enumerate(zip(widths, depths)):
        mid = int(round(width * bot_muls[i]))
        for j in range(depth):
            cx = _bottleneck_cx(cx, c, width, strides[i] if j == 0 else 1, dilations[i],
                                mid, mid // group_widths[i], se_width(c, se_ratio))
            c = width
    if num_classes is not None:
        cx = _conv_cx(cx._replace(h=1, w=1), c, num_classes, 1, bias=True)
    return {'params': cx.params, 'flops': cx.flops, 'acts': cx.acts}


def complexity(arch: ArchLike, input_size: Size = 224, num_classes: Optional[int] = 1000,
               in_channels: int = 3, with_stem: bool = True, stem_channels: int = 32,
               strides: Optional[Sequence[int]] = None,
               dilations: Optional[Sequence[int]] = None) -> Dict[str, int]:
    """Params, multiply-adds and activations of a RegNet, without building it.

    Args:
        arch: A preset name, an arch dict or an :class:`~mmregnet.arch.ArchSpec`.
        input_size: ``H`` or ``(H, W)`` of the input.
        num_classes: Classes of pycls's head (global pool + linear); None
            counts the backbone alone, as a detector uses it.
        in_channels: Channels of the input (3 for images, 64 for a PointPillars
            pseudo image).
        with_stem: Whether the 3x3 stride-2 stem is present.
        stem_channels: Output channels of the stem.
        strides: Stride of each stage's first block (default 2 for all).
        dilations: Dilation of each stage's 3x3 convs (default 1 for all).

    Returns:
        ``{'params': int, 'flops': int, 'acts': int}``; flops are multiply-adds.
    """
    spec = get_arch(arch)
    design = spec.design()
    return anynet_complexity(design.widths, design.depths, design.group_widths,
                             (spec.bot_mul,) * design.num_stages, spec.se_ratio, input_size,
                             num_classes, in_channels, with_stem, stem_channels, strides,
                             dilations)
