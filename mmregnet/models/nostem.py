"""mmdet3d's ``NoStemRegNet``, argument for argument, built on this package's RegNet."""
from typing import Any, Optional

from ..arch import ArchLike
from ..errors import InputError
from .arguments import check_channels
from .regnet import ConfigType, RegNet


class NoStemRegNet(RegNet):
    """The stem-less RegNet of mmdet3d's PointPillars configs, with RegNetY and arch dicts.

    Takes what mmdet3d's ``NoStemRegNet`` takes, with its meaning: mmdet's
    ``RegNet`` arguments, where ``stem_channels`` is the channel count of the
    pseudo image the voxel encoder feeds in (there is no stem) and
    ``in_channels`` is accepted but unused. Its state dicts are mmdet3d's, so
    their checkpoints load as they are. In an mmdet3d config,
    ``type='mmregnet.NoStemRegNet'`` selects it (plain ``'NoStemRegNet'`` stays
    mmdet3d's class), and ``arch`` may then be any preset, RegNetY included,
    or an arch dict.

    Args:
        arch: A preset name or an arch dict (see :class:`RegNet`).
        init_cfg: mmengine init config (see :class:`RegNet`).
        **kwargs: :class:`RegNet`'s other arguments except ``with_stem``;
            ``stem_channels`` (default 32, as mmdet3d's) is the input's channels.

    Raises:
        mmregnet.errors.InputError: As :class:`RegNet`, or ``with_stem`` given.

    Example:
        >>> import torch
        >>> net = NoStemRegNet('regnety_400mf', stem_channels=64, base_channels=64,
        ...                    strides=(1, 2, 2, 2), out_indices=(1, 2, 3)).eval()
        >>> net.in_channels, net.out_channels, net.out_strides
        (64, (104, 208, 440), (2, 4, 8))
        >>> [tuple(o.shape) for o in net(torch.rand(1, 64, 32, 32))]
        [(1, 104, 16, 16), (1, 208, 8, 8), (1, 440, 4, 4)]
    """

    def __init__(self, arch: ArchLike, init_cfg: Optional[ConfigType] = None,
                 **kwargs: Any) -> None:
        if 'with_stem' in kwargs:
            raise InputError(f'NoStemRegNet has no stem, so it takes no with_stem (got '
                             f'with_stem={kwargs["with_stem"]!r}); for a stem use RegNet')
        stem_channels = check_channels('stem_channels', kwargs.pop('stem_channels', 32))
        check_channels('in_channels', kwargs.pop('in_channels', 3))  # unused, as in mmdet3d
        super().__init__(arch, in_channels=stem_channels, stem_channels=stem_channels,
                         init_cfg=init_cfg, with_stem=False, **kwargs)
