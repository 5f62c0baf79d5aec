"""Reading a RegNet's structure off the tensor shapes of an mmregnet-keyed state dict.

Nothing is assumed from file names or presets: stage widths are the 1x1
convs' output channels, depths the number of blocks, group widths the 3x3
convs' input channels per group, and SE widths the squeeze convs' outputs.
Every tensor is checked against the shape its neighbours imply, so a network
that is not a RegNet (a ResNet's 7x7 stem, a bias on a conv) is named early.
"""
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence, Set, Tuple

import torch
from torch import Tensor

from .errors import ConversionError

_BN_LEAVES = ('weight', 'bias', 'running_mean', 'running_var')


@dataclass(frozen=True)
class ObservedArch:
    """The structure a state dict's shapes describe.

    Attributes:
        widths: Output channels of each stage.
        depths: Blocks per stage.
        group_widths: Channels per group of each stage's 3x3 conv.
        bottleneck_widths: Channels inside each stage's blocks.
        se_widths: ``(block input channels, SE channels)`` of every block; empty without SE.
        projections: Whether each stage's first block has a projection shortcut.
        in_channels: Channels of the network's input.
        stem_channels: Output channels of the stem, or None for a stem-less backbone.
    """

    widths: Tuple[int, ...]
    depths: Tuple[int, ...]
    group_widths: Tuple[int, ...]
    bottleneck_widths: Tuple[int, ...]
    se_widths: Tuple[Tuple[int, int], ...]
    projections: Tuple[bool, ...]
    in_channels: int
    stem_channels: Optional[int]

    def describe(self) -> str:
        """One line: widths, depths, group widths and SE, for messages."""
        se = 'with SE' if self.se_widths else 'no SE'
        return (f'widths {self.widths}, depths {self.depths}, group widths '
                f'{self.group_widths}, {se}')


class _Reader:
    """Looks tensors up by key, checks their shapes and remembers what it used."""

    def __init__(self, state: Mapping[str, Tensor]) -> None:
        self.state = state
        self.used: Set[str] = set()

    def has(self, module: str) -> bool:
        return f'{module}.weight' in self.state

    def shape(self, key: str, expected: Sequence[Optional[int]]) -> Tuple[int, ...]:
        if key not in self.state:
            raise ConversionError(f'not a complete RegNet: {key!r} is missing')
        shape = tuple(self.state[key].shape)
        if len(shape) != len(expected) or any(e is not None and e != s
                                              for e, s in zip(expected, shape)):
            want = tuple('*' if e is None else e for e in expected)
            raise ConversionError(f'{key!r} has shape {shape}, expected {want} in a RegNet')
        self.used.add(key)
        return shape

    def norm(self, module: str, channels: int) -> None:
        for leaf in _BN_LEAVES:
            self.shape(f'{module}.{leaf}', (channels,))
        self.used.add(f'{module}.num_batches_tracked')


def _stem(reader: _Reader) -> Tuple[Optional[int], Optional[int]]:
    if not reader.has('conv1'):
        return None, None
    out, cin, kh, kw = reader.shape('conv1.weight', (None, None, None, None))
    if (kh, kw) != (3, 3):
        raise ConversionError(f'not a RegNet: the stem conv is {kh}x{kw} (conv1.weight '
                              f'{tuple(reader.state["conv1.weight"].shape)}; a ResNet has a 7x7 '
                              'stem), RegNet\'s stem is a single 3x3 conv')
    reader.norm('bn1', out)
    return out, cin


def _block(reader: _Reader, prefix: str, cin: int, first: bool) -> Tuple[int, int, int, int, bool]:
    b = reader.shape(f'{prefix}.conv1.weight', (None, cin, 1, 1))[0]
    reader.norm(f'{prefix}.bn1', b)
    gw = reader.shape(f'{prefix}.conv2.weight', (b, None, 3, 3))[1]
    if b % gw:
        raise ConversionError(f'{prefix}.conv2.weight: {b} channels do not split into groups '
                              f'of {gw}')
    reader.norm(f'{prefix}.bn2', b)
    se = 0
    if reader.has(f'{prefix}.se.fc1'):
        se = reader.shape(f'{prefix}.se.fc1.weight', (None, b, 1, 1))[0]
        reader.shape(f'{prefix}.se.fc1.bias', (se,))
        reader.shape(f'{prefix}.se.fc2.weight', (b, se, 1, 1))
        reader.shape(f'{prefix}.se.fc2.bias', (b,))
    w = reader.shape(f'{prefix}.conv3.weight', (None, b, 1, 1))[0]
    reader.norm(f'{prefix}.bn3', w)
    projection = reader.has(f'{prefix}.downsample.0')
    if projection:
        reader.shape(f'{prefix}.downsample.0.weight', (w, cin, 1, 1))
        reader.norm(f'{prefix}.downsample.1', w)
    if projection and not first:
        raise ConversionError(f'{prefix}: only a stage\'s first block has a projection shortcut')
    if not projection and cin != w:
        raise ConversionError(f'{prefix}: a block from {cin} to {w} channels needs a projection '
                              'shortcut (downsample.0/.1)')
    return w, b, gw, se, projection


def _count(keys: Sequence[str], prefix: str, first: int) -> int:
    found = {int(k[len(prefix):].split('.', 1)[0]) for k in keys
             if k.startswith(prefix) and k[len(prefix):].split('.', 1)[0].isdigit()}
    if found != set(range(first, first + len(found))):
        raise ConversionError(f'not a complete RegNet: the {prefix}N indices are {sorted(found)}, '
                              f'expected {first}, {first + 1}, ...')
    return len(found)


def read_arch(state: Mapping[str, Tensor]) -> ObservedArch:
    """Reads stage widths, depths, group widths and SE widths off the shapes.

    Args:
        state: A backbone state dict in mmregnet's keys (``conv1``/``bn1``
            stem optional, ``layer{i}.{j}.*`` blocks).

    Returns:
        The observed structure.

    Raises:
        ConversionError: Missing tensors, shapes no RegNet has, or tensors
            that are not part of one.
    """
    reader = _Reader(state)
    stem_channels, in_channels = _stem(reader)
    num_stages = _count(list(state), 'layer', 1)
    if num_stages == 0:
        raise ConversionError('not a RegNet: no layer1.* blocks')
    channels = stem_channels or reader.shape('layer1.0.conv1.weight', (None,) * 4)[1]
    in_channels = in_channels or channels
    stages, se_widths, projections = [], [], []
    for i in range(1, num_stages + 1):
        depth = _count(list(state), f'layer{i}.', 0)
        blocks = []
        for j in range(depth):
            w, b, gw, se, proj = _block(reader, f'layer{i}.{j}', channels, j == 0)
            if se:
                se_widths.append((channels, se))
            if j == 0:
                projections.append(proj)
            blocks.append((w, b, gw, bool(se)))
            channels = w
        if len(set(blocks)) != 1:
            raise ConversionError(f'layer{i}: blocks differ in width, bottleneck, group width '
                                  f'or SE ({sorted(set(blocks))}); a RegNet stage is uniform')
        stages.append(blocks[0] + (depth,))
    if se_widths and len(se_widths) != sum(s[4] for s in stages):
        raise ConversionError('only some blocks have squeeze-and-excitation; a RegNet has it '
                              'in every block (RegNetY) or in none (RegNetX)')
    unused = sorted(set(state) - reader.used)
    if unused:
        raise ConversionError(f'{len(unused)} tensor(s) are not part of a RegNet backbone, '
                              f'e.g. {unused[0]!r}')
    return ObservedArch(
        widths=tuple(s[0] for s in stages), depths=tuple(s[4] for s in stages),
        group_widths=tuple(s[2] for s in stages), bottleneck_widths=tuple(s[1] for s in stages),
        se_widths=tuple(se_widths), projections=tuple(projections),
        in_channels=in_channels, stem_channels=stem_channels)


def fill_batch_counters(state: Dict[str, Tensor]) -> Tuple[Dict[str, Tensor], Tuple[str, ...]]:
    """Adds the ``num_batches_tracked`` counters some exports leave out (as 0).

    Args:
        state: An mmregnet-keyed backbone state dict.

    Returns:
        The completed state dict and the keys that were added.
    """
    added = tuple(f'{k[:-len(".running_mean")]}.num_batches_tracked' for k in state
                  if k.endswith('.running_mean')
                  and f'{k[:-len(".running_mean")]}.num_batches_tracked' not in state)
    out = dict(state)
    out.update({k: torch.tensor(0, dtype=torch.long) for k in added})
    return out, added
