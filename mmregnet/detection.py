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
import torch.nn as nn
from mmengine.hooks import Hook

from .arch import arch_name
# Configs import these from here; they live in the torch-free module.
from .backbone_configs import bev_backbone, image_backbone, stage_channels  # noqa: F401
from .errors import InputError
from .models import RegNet
from .registry import HOOKS

#: (backbone attribute, neck attribute) pairs of mmdet and mmdet3d detectors.
_BACKBONE_NECK_PAIRS = (('backbone', 'neck'), ('pts_backbone', 'pts_neck'),
                        ('img_backbone', 'img_neck'))


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
