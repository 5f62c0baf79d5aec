"""How a design-space tool counts complexity: one input and one counting convention.

RegNets are counted by :func:`mmregnet.complexity.complexity` itself; AnyNet
nets (per-stage widths, no RegNet parameters) by the same per-layer rules.

Example:
    >>> Measure()('regnetx_400mf')['flops']
    397678568
    >>> Measure().describe()
    '3x224x224 input, stem, 1000-class head'
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

from ..arch import ArchLike
from ..checks import is_int
from ..complexity import anynet_complexity, complexity
from .space import Net

#: pycls's stem width, which the zoo's FLOPs (and preset names) assume.
STEM_CHANNELS = 32


@dataclass(frozen=True)
class Measure:
    """An input and what counts; the default is pycls's ImageNet convention.

    Attributes:
        input_size: ``(H, W)`` of the input.
        in_channels: Input channels.
        with_stem: Whether the 3x3 stride-2 stem is present.
        strides: Stride of each stage's first block (None: 2 everywhere).
        num_classes: Classes of the classification head, or None for the
            backbone alone (as a detector uses it).
    """

    input_size: Tuple[int, int] = (224, 224)
    in_channels: int = 3
    with_stem: bool = True
    strides: Optional[Tuple[int, ...]] = None
    num_classes: Optional[int] = 1000

    @classmethod
    def create(cls, input_size: Sequence[int] = (224, 224), in_channels: int = 3,
               with_stem: bool = True, strides: Optional[Sequence[int]] = None,
               num_classes: Optional[int] = 1000, num_stages: int = 4) -> 'Measure':
        """Checks user-given options and builds the measure.

        Args:
            input_size: ``(H, W)``.
            in_channels: Input channels.
            with_stem: Whether the stem is present.
            strides: One stride per stage, or None.
            num_classes: Head classes, or None for the backbone alone.
            num_stages: Stages of the nets measured (to check ``strides``).

        Raises:
            ValueError: A size, channel count or stride that is not a positive
                integer, or not one stride per stage.
        """
        size = positive_ints('the input size (H W)', input_size, 2)
        channels = positive_ints('in_channels', [in_channels], 1)[0]
        if strides is not None:
            strides = positive_ints('strides (one per stage)', strides, num_stages)
        return cls(size, channels, with_stem, strides, num_classes)

    def __call__(self, arch: ArchLike) -> Dict[str, int]:
        """Params, flops (multiply-adds) and activations of a RegNet."""
        return complexity(arch, input_size=self.input_size, num_classes=self.num_classes,
                          in_channels=self.in_channels, with_stem=self.with_stem,
                          stem_channels=STEM_CHANNELS, strides=self.strides)

    def of_net(self, net: Net) -> Dict[str, int]:
        """Params, flops and activations of any :class:`~.space.Net`.

        Args:
            net: A RegNet (counted by :func:`~mmregnet.complexity.complexity`) or
                an AnyNet described per stage.

        Returns:
            ``{'params': int, 'flops': int, 'acts': int}``.
        """
        if net.arch is not None:
            return self(net.arch)
        return anynet_complexity(net.widths, net.depths, net.group_widths, net.bot_muls,
                                 net.se_ratio, self.input_size, self.num_classes,
                                 self.in_channels, self.with_stem, STEM_CHANNELS, self.strides)

    def describe(self) -> str:
        """The measure in words, e.g. ``'64x496x432 input, no stem, backbone only'``."""
        h, w = self.input_size
        parts = [f'{self.in_channels}x{h}x{w} input', 'stem' if self.with_stem else 'no stem']
        if self.strides:
            parts.append('strides ' + ','.join(map(str, self.strides)))
        parts.append('backbone only' if self.num_classes is None
                     else f'{self.num_classes}-class head')
        return ', '.join(parts)


def positive_ints(name: str, values: Sequence[int], count: int) -> Tuple[int, ...]:
    """Checks that ``values`` are ``count`` positive integers.

    Raises:
        ValueError: Naming ``name``, what was expected and what was given.
    """
    values = tuple(values)
    if len(values) != count or not all(is_int(v) and v >= 1 for v in values):
        what = 'a positive integer' if count == 1 else f'{count} positive integers'
        shown = values[0] if count == 1 and len(values) == 1 else values
        raise ValueError(f'{name} must be {what}, got {shown!r}')
    return values
