"""Fitting image-pretrained weights to a stem-less backbone (PointPillars' BEV pseudo image).

Without the stem, the first block reads the voxel encoder's output (64
channels in PointPillars) where the pretrained weights expect the stem's 32.
Three kinds of tensors in ``layer1.0`` depend on that width: the 1x1 conv
(``conv1``) and the projection shortcut (``downsample.0``), which read it, and,
in RegNetY, the SE pair, whose squeeze width is a quarter of it.

mmdet3d's loader skips such tensors, so those layers silently start random.
Here they are adapted instead, keeping every pretrained filter:

* Input channels, widening ``C -> C'``: new channel ``c`` takes old channel
  ``c mod C``, divided by how many new channels share it. The block then
  computes exactly what it computed before when the new input repeats the old
  channels cyclically, and its output scale (hence the BN statistics after
  it) is the pretrained one for inputs of similar scale.
* Input channels, narrowing: old channel ``k`` is added into new channel
  ``k mod C'``: exact when the old input is the new one repeated.
* SE squeeze width, widening ``s -> s'``: hidden unit ``r`` copies unit
  ``r mod s`` and the excitation conv averages the copies, so the gate is
  unchanged for every input. Narrowing cannot be exact and is refused.

The stem's tensors are dropped and reported, as is ``layer1.0``'s projection
when the stem-less stage 1 keeps its width at stride 1 and so has none.
"""
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..arch import MAX_STRIDE, MAX_WIDTH, ArchSpec
from ..checks import is_int
from ..checkpoint.errors import ConversionError

_STEM = ('conv1.', 'bn1.')


def check_target(in_channels: Optional[int], strides: Optional[Sequence[int]],
                 num_stages: Optional[int] = None) -> None:
    """Checks ``--stemless`` and ``--strides`` before anything is built or allocated.

    Args:
        in_channels: The stem-less backbone's input channels, or None (keep the stem).
        strides: The target's stage strides, or None (the default).
        num_stages: The weights' number of stages, once known; None checks
            the values alone.

    Raises:
        ConversionError: A width outside ``1..MAX_WIDTH``, a stride outside
            ``1..MAX_STRIDE``, or not one stride per stage.
    """
    if in_channels is not None and not (is_int(in_channels) and 1 <= in_channels <= MAX_WIDTH):
        raise ConversionError(f'--stemless IN_CHANNELS must be an integer in 1..{MAX_WIDTH} '
                              f'(PointPillars: 64), got {in_channels!r}')
    if strides is None:
        return
    strides = tuple(strides)
    if not strides or not all(is_int(s) and 1 <= s <= MAX_STRIDE for s in strides):
        raise ConversionError(f'--strides must be integers in 1..{MAX_STRIDE}, one per stage '
                              f'(PointPillars: 1 2 2 2), got {" ".join(map(str, strides))}')
    if num_stages is not None and len(strides) != num_stages:
        raise ConversionError(f'--strides must give one stride for each of the weights\' '
                              f'{num_stages} stages, got {len(strides)}: '
                              f'{" ".join(map(str, strides))}')


@dataclass(frozen=True)
class StemlessResult:
    """Weights fitted to a stem-less backbone, with what changed.

    Attributes:
        state: The backbone state dict of the stem-less RegNet.
        adapted: One line per adapted tensor (key, old and new shape).
        dropped: One line per source tensor that has no place, with the reason.
    """

    state: Dict[str, Tensor]
    adapted: Tuple[str, ...]
    dropped: Tuple[str, ...]


def widen_inputs(weight: Tensor, channels: int) -> Tensor:
    """Maps a conv's input channels ``C -> channels`` cyclically (see the module doc).

    Args:
        weight: ``(out, C, kh, kw)``.
        channels: The new input width.

    Returns:
        ``(out, channels, kh, kw)``.
    """
    old = weight.shape[1]
    if channels >= old:
        index = torch.arange(channels) % old
        copies = torch.bincount(index, minlength=old).to(weight.dtype)
        return weight[:, index] / copies[index].view(1, -1, 1, 1)
    out = weight.new_zeros((weight.shape[0], channels) + tuple(weight.shape[2:]))
    return out.index_add_(1, torch.arange(old) % channels, weight)


def _widen_se(state: Mapping[str, Tensor], prefix: str, width: int) -> Dict[str, Tensor]:
    fc1, bias = state[f'{prefix}.fc1.weight'], state[f'{prefix}.fc1.bias']
    old = fc1.shape[0]
    if width < old:
        raise ConversionError(f'{prefix}: the SE squeeze width would shrink from {old} to {width} '
                              'channels, which cannot keep the pretrained gate; use an input '
                              'width at least the stem width')
    index = torch.arange(width) % old
    return {f'{prefix}.fc1.weight': fc1[index], f'{prefix}.fc1.bias': bias[index],
            f'{prefix}.fc2.weight': widen_inputs(state[f'{prefix}.fc2.weight'], width)}


def _target_shapes(arch: ArchSpec, in_channels: int,
                   strides: Optional[Sequence[int]]) -> Dict[str, torch.Size]:
    from ..models import RegNet  # lazy: mmcv (and mmdet3d's registry) only when one is built
    with torch.device('meta'):  # shapes only, no memory
        net = RegNet(arch, in_channels=in_channels, with_stem=False, strides=strides)
    return {k: v.shape for k, v in net.state_dict().items()}


def _drop_reason(key: str) -> str:
    if key.startswith(_STEM):
        return 'the stem; a stem-less backbone has none'
    return 'stage 1 keeps its width at stride 1 here, so its first block has no projection'


def adapt_to_stemless(state: Mapping[str, Tensor], arch: ArchSpec, in_channels: int,
                      strides: Optional[Sequence[int]] = None) -> StemlessResult:
    """Fits a backbone state dict with a stem to ``RegNet(arch, with_stem=False, ...)``.

    Args:
        state: mmregnet-keyed backbone weights (with or without a stem).
        arch: Their arch.
        in_channels: Channels of the stem-less backbone's input (64 in PointPillars).
        strides: Stage strides of the stem-less backbone (default 2 each).

    Returns:
        The fitted weights and a report of every adapted and dropped tensor.

    Raises:
        ConversionError: A tensor the target needs is missing or cannot be adapted.
    """
    check_target(in_channels, strides, len(arch.design().widths))
    target = _target_shapes(arch, in_channels, strides)
    out: Dict[str, Tensor] = {}
    adapted = []
    for key, shape in target.items():
        if key not in state:
            raise ConversionError(f'the stem-less backbone needs {key!r} {tuple(shape)}, '
                                  'which the weights do not have')
        if key in out:
            continue
        if state[key].shape == shape:
            out[key] = state[key]
            continue
        if key.startswith('layer1.0.se.'):
            new = _widen_se(state, 'layer1.0.se', target['layer1.0.se.fc1.bias'][0])
        elif key in ('layer1.0.conv1.weight', 'layer1.0.downsample.0.weight'):
            new = {key: widen_inputs(state[key], shape[1])}
        else:
            raise ConversionError(f'{key!r} has shape {tuple(state[key].shape)} but the stem-less '
                                  f'backbone needs {tuple(shape)}; only layer1.0 can be adapted')
        for k, v in new.items():
            out[k] = v
            adapted.append(f'{k} {tuple(state[k].shape)} -> {tuple(v.shape)}')
    dropped = tuple(f'{k} ({_drop_reason(k)})' for k in state if k not in target)
    return StemlessResult(out, tuple(adapted), dropped)
