"""What ``mmregnet show`` prints: stages, outputs, complexity and config snippets.

Example:
    >>> b = BackboneLayout.create('regnetx_400mf', in_channels=64, with_stem=False,
    ...                     strides=(1, 2, 2, 2), out_indices=(1, 2, 3))
    >>> b.out_channels, b.out_strides
    ((64, 160, 384), (2, 4, 8))
    >>> print(config_snippets(b)['fpn'], end='')
    pts_neck=dict(in_channels=[64, 160, 384]),
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

from ..arch import ArchLike, ArchSpec, arch_name, get_arch
from ..backbone_configs import bev_backbone, config_text, image_backbone
from .formatting import format_size, format_table
from .measure import Measure

#: The import a config needs before ``type='mmregnet.RegNet'`` resolves.
CUSTOM_IMPORTS = "custom_imports = dict(imports=['mmregnet'], allow_failed_imports=False)"


@dataclass(frozen=True)
class BackboneLayout:
    """A RegNet as a detector would use it: arch, input and outputs.

    Attributes:
        arch: The architecture.
        measure: The input (size, channels, stem, strides); backbone only.
        out_indices: Stages whose outputs the backbone returns, increasing.
    """

    arch: ArchSpec
    measure: Measure
    out_indices: Tuple[int, ...]

    @classmethod
    def create(cls, arch: ArchLike, input_size: Sequence[int] = (224, 224), in_channels: int = 3,
               with_stem: bool = True, strides: Optional[Sequence[int]] = None,
               out_indices: Sequence[int] = (0, 1, 2, 3)) -> 'BackboneLayout':
        """Checks the options against the arch and builds the description.

        Raises:
            ValueError: An unknown arch, or an option that does not fit it
                (strides not one per stage, out_indices not increasing stage indices...).
        """
        spec = get_arch(arch)
        n = spec.design().num_stages
        measure = Measure.create(input_size, in_channels, with_stem, strides, None, n)
        out = tuple(out_indices)
        if not out or list(out) != sorted(set(out)) or not all(
                isinstance(i, int) and 0 <= i < n for i in out):
            raise ValueError(f'out_indices must be increasing stage indices in 0..{n - 1} (the '
                             f'backbone emits features in stage order), got {out}')
        return cls(spec, measure, out)

    @property
    def stage_strides(self) -> Tuple[int, ...]:
        """Stride of each stage's output relative to the input."""
        return self.arch.design().stage_strides(self.measure.with_stem, self.measure.strides)

    @property
    def out_channels(self) -> Tuple[int, ...]:
        """Channels of each output."""
        return tuple(self.arch.design().widths[i] for i in self.out_indices)

    @property
    def out_strides(self) -> Tuple[int, ...]:
        """Stride of each output relative to the input."""
        return tuple(self.stage_strides[i] for i in self.out_indices)


def config_snippets(b: BackboneLayout) -> Dict[str, str]:
    """Config text to paste: ``backbone``, and the ``fpn`` or ``secondfpn`` neck.

    Without a stem the snippets are for PointPillars (``pts_backbone`` replacing
    the base config's with ``_delete_``, mmdet3d's norm and weights, and
    ``pts_neck`` channels merged into the base config's neck); with a stem for
    mmdet (``backbone`` of type ``mmregnet.RegNet`` and ``neck``). Each ends in
    ``,\\n`` for a ``model=dict(...)``.
    """
    m, channels = b.measure, list(b.out_channels)
    upsample = [s // b.out_strides[0] for s in b.out_strides]
    arch = arch_name(b.arch) or b.arch.to_dict()
    strides = {} if m.strides is None else dict(strides=tuple(m.strides))
    if m.with_stem:
        key, neck = 'backbone', 'neck'
        cfg = image_backbone(arch, out_indices=b.out_indices, **strides)
        if m.in_channels != 3:
            cfg['in_channels'] = m.in_channels
    else:
        key, neck = 'pts_backbone', 'pts_neck'
        cfg = bev_backbone(arch, in_channels=m.in_channels, out_indices=b.out_indices,
                           **strides)
    return {
        'backbone': config_text(key, cfg),
        'fpn': config_text(neck, dict(in_channels=channels)),
        'secondfpn': config_text(neck, dict(in_channels=channels, upsample_strides=upsample)),
    }


def describe(b: BackboneLayout) -> str:
    """The full ``show`` text: stages, outputs, complexity and the config snippets."""
    d = b.arch.design()
    strides = b.measure.strides or (2,) * d.num_stages
    head = ', '.join(f'{k}={v}' for k, v in b.arch.to_dict().items())
    rows = [[i, f'layer{i + 1}', d.widths[i], d.depths[i], d.group_widths[i], d.groups[i],
             strides[i], b.stage_strides[i], 'yes' if i in b.out_indices else '']
            for i in range(d.num_stages)]
    table = format_table(['stage', 'layer', 'width', 'depth', 'group_w', 'groups', 'stride',
                          'out_stride', 'output'], rows)
    cx = b.measure(b.arch)
    snippets = config_snippets(b)
    return (f'{arch_name(b.arch) or "custom arch"}: {head}\n\n{table}\n'
            f'outputs (out_indices={b.out_indices}): channels {b.out_channels}, '
            f'strides {b.out_strides}\n'
            f'complexity at {b.measure.describe()}: params {format_size(cx["params"])}, '
            f'flops {format_size(cx["flops"])}, acts {format_size(cx["acts"])}\n\n'
            f'# {CUSTOM_IMPORTS}\n{snippets["backbone"]}'
            f'# with an FPN neck\n{snippets["fpn"]}'
            f'# or with a SECOND-FPN neck, every output upsampled to stride {b.out_strides[0]}\n'
            f'{snippets["secondfpn"]}')
