"""Glue between the RegNet backbone and detector necks.

mmdet and mmdet3d ask users to read a neck's ``in_channels`` off the paper's
figures, and a wrong number surfaces as a convolution shape error at the first
forward. Configs call :func:`stage_channels` to derive the numbers from the
arch table, and :class:`NeckChannelsCheckHook` (or :func:`check_neck_channels`)
verifies a built detector before it runs.

Example:
    >>> stage_channels('regnetx_400mf', (1, 2, 3))
    [64, 160, 384]
"""
from typing import Any, Dict, List, Sequence

import torch.nn as nn
from mmengine.hooks import Hook

from .arch import ArchLike, arch_name, get_arch
from .errors import InputError
from .registry import HOOKS

#: (backbone attribute, neck attribute) pairs of mmdet and mmdet3d detectors.
_BACKBONE_NECK_PAIRS = (('backbone', 'neck'), ('pts_backbone', 'pts_neck'),
                        ('img_backbone', 'img_neck'))


def stage_channels(arch: ArchLike, out_indices: Sequence[int] = (0, 1, 2, 3)) -> List[int]:
    """Output channels of the given stages of ``arch``, for a neck's ``in_channels``.

    Raises:
        ValueError: An index is not a stage of the arch.
    """
    widths = get_arch(arch).design().widths
    bad = [i for i in out_indices if not 0 <= i < len(widths)]
    if bad:
        raise ValueError(f'out_indices {bad} are not stages of the arch, which has '
                         f'{len(widths)} stages (0..{len(widths) - 1})')
    return [widths[i] for i in out_indices]


def bev_backbone(arch: ArchLike, **overrides: Any) -> Dict[str, Any]:
    """The stem-less backbone config of PointPillars-RegNet, as mmdet3d trains it.

    The pillar encoder's 64-channel pseudo image plays the stem's role, the
    first stage keeps the resolution (stride 1) and stages 1-3 feed the neck.
    ``_delete_`` replaces whatever backbone the base config had.

    Args:
        arch: A preset name or arch dict.
        **overrides: Backbone arguments that differ (e.g. ``init_cfg``).
    """
    get_arch(arch)  # fail at config load, naming the valid archs
    return dict(_delete_=True, type='RegNet', arch=arch, with_stem=False, in_channels=64,
                strides=(1, 2, 2, 2), out_indices=(1, 2, 3), frozen_stages=-1,
                norm_cfg=dict(type='naiveSyncBN2d', eps=1e-3, momentum=0.01),
                norm_eval=False, **overrides)


def image_backbone(arch: ArchLike, **overrides: Any) -> Dict[str, Any]:
    """The image backbone config of mmdet's RegNet detectors (stem, 4 outputs).

    ``type='mmregnet.RegNet'`` because in mmdet's scope plain ``'RegNet'`` is
    mmdet's own class.

    Args:
        arch: A preset name or arch dict.
        **overrides: Backbone arguments that differ.
    """
    get_arch(arch)
    return dict(_delete_=True, type='mmregnet.RegNet', arch=arch, out_indices=(0, 1, 2, 3),
                frozen_stages=1, norm_cfg=dict(type='BN', requires_grad=True),
                norm_eval=True, **overrides)


def check_neck_channels(model: nn.Module) -> None:
    """Checks that each neck reads the channels its RegNet backbone emits.

    Args:
        model: A detector with ``backbone``/``neck`` or ``pts_backbone``/``pts_neck``
            attributes (wrapped models are unwrapped via ``.module``).

    Raises:
        InputError: (a ``ValueError``) Names the neck's ``in_channels``, the
            backbone's channels, and the setting that fixes it; the tools
            print it as one line and exit 1.
    """
    from .models import RegNet
    model = getattr(model, 'module', model)
    for backbone_attr, neck_attr in _BACKBONE_NECK_PAIRS:
        backbone = getattr(model, backbone_attr, None)
        neck = getattr(model, neck_attr, None)
        expected = list(getattr(backbone, 'out_channels', ()))
        if not isinstance(backbone, RegNet) or neck is None or not hasattr(neck, 'in_channels'):
            continue
        got = neck.in_channels
        got = [got] if isinstance(got, int) else list(got)
        if got != expected:
            name = arch_name(backbone.arch) or backbone.arch.to_dict()
            raise InputError(
                f'{neck_attr}.in_channels={got} does not match the channels that '
                f'{backbone_attr} (RegNet {name!r}, out_indices={backbone.out_indices}) '
                f'emits: {expected}. Set {neck_attr}.in_channels={expected}, or derive it '
                f'in the config with mmregnet.stage_channels({name!r}, '
                f'{backbone.out_indices}).')


@HOOKS.register_module()
class NeckChannelsCheckHook(Hook):
    """Runs :func:`check_neck_channels` on the Runner's model before anything else."""

    priority = 'VERY_HIGH'

    def before_run(self, runner) -> None:
        """Fails fast, before data loading, if a neck does not fit its backbone."""
        check_neck_channels(runner.model)
