"""The backbone configs of mmregnet's detectors, as config files and printouts use them.

One definition of each setting that configs, ``mmregnet show``, the converter's
printout, benchmarks and tests share: a neck's input channels
(:func:`stage_channels`), the stem-less PointPillars backbone
(:func:`bev_backbone`) and the image backbone of mmdet's detectors
(:func:`image_backbone`). Only the arch table is needed, so configs and the
CLI load this without torch.

Example:
    >>> stage_channels('regnetx_400mf', (1, 2, 3))
    [64, 160, 384]
    >>> bev_backbone('regnetx_400mf')['init_cfg']
    {'type': 'Pretrained', 'checkpoint': 'open-mmlab://regnetx_400mf'}
"""
from typing import Any, Dict, List, Optional, Sequence

from .arch import ArchLike, arch_name, get_arch

#: Presets with ImageNet weights under ``open-mmlab://`` (mmengine's model-zoo table).
OPEN_MMLAB_WEIGHTS = ('regnetx_400mf', 'regnetx_800mf', 'regnetx_1.6gf', 'regnetx_3.2gf',
                      'regnetx_4.0gf', 'regnetx_6.4gf', 'regnetx_8.0gf', 'regnetx_12gf')
#: What PointPillars' pillar encoder feeds the backbone: a 64-channel pseudo image.
BEV_IN_CHANNELS = 64
#: The stem-less backbone's strides and outputs, as mmdet3d's RegNet PointPillars use.
BEV_STRIDES = (1, 2, 2, 2)
BEV_OUT_INDICES = (1, 2, 3)


def stage_channels(arch: ArchLike, out_indices: Sequence[int] = (0, 1, 2, 3)) -> List[int]:
    """Output channels of the given stages of ``arch``, for a neck's ``in_channels``.

    Raises:
        ValueError: An index is not a stage of the arch.
    """
    widths = get_arch(arch).design().widths
    bad = [i for i in out_indices if isinstance(i, bool) or not isinstance(i, int)
           or not 0 <= i < len(widths)]
    if bad:
        raise ValueError(f'out_indices {bad} are not stages of the arch, which has '
                         f'{len(widths)} stages (0..{len(widths) - 1})')
    return [widths[i] for i in out_indices]


def bev_layout(in_channels: int = BEV_IN_CHANNELS) -> Dict[str, Any]:
    """The stem-less PointPillars structure (no norm, no weights): what benchmarks and
    tests build, and the core of :func:`bev_backbone`.

    >>> bev_layout()
    {'with_stem': False, 'in_channels': 64, 'strides': (1, 2, 2, 2), 'out_indices': (1, 2, 3)}
    """
    return dict(with_stem=False, in_channels=in_channels, strides=BEV_STRIDES,
                out_indices=BEV_OUT_INDICES)


def pretrained(arch: ArchLike) -> Optional[Dict[str, str]]:
    """The ``init_cfg`` of ``arch``'s ImageNet weights under ``open-mmlab://``, if any.

    Other presets (RegNetY, X-200MF/600MF/16GF/32GF) have none there: convert
    pycls/timm/torchvision weights with ``tools/model_converters/regnet2mmdet.py``
    and point ``init_cfg`` at the result.
    """
    name = arch_name(arch)
    if name in OPEN_MMLAB_WEIGHTS:
        return dict(type='Pretrained', checkpoint=f'open-mmlab://{name}')
    return None


def bev_backbone(arch: ArchLike, **overrides: Any) -> Dict[str, Any]:
    """The stem-less backbone config of PointPillars-RegNet, as mmdet3d trains it.

    The pillar encoder's 64-channel pseudo image plays the stem's role, the
    first stage keeps the resolution (stride 1) and stages 1-3 feed the neck.
    The norm is mmdet3d's (naiveSyncBN2d, eps 1e-3, momentum 0.01, trained),
    and the weights start from ImageNet (:func:`pretrained`). ``_delete_``
    replaces whatever backbone the base config had.

    Args:
        arch: A preset name or arch dict.
        **overrides: Backbone arguments that differ (``init_cfg=None`` for random
            weights where :func:`pretrained` gives ImageNet ones).
    """
    get_arch(arch)  # fail at config load, naming the valid archs
    cfg = dict(_delete_=True, type='RegNet', arch=arch, **bev_layout(), frozen_stages=-1,
               norm_cfg=dict(type='naiveSyncBN2d', eps=1e-3, momentum=0.01), norm_eval=False)
    cfg.update(_with_weights(arch, overrides))
    return cfg


def image_backbone(arch: ArchLike, **overrides: Any) -> Dict[str, Any]:
    """The image backbone config of mmdet's RegNet detectors (stem, 4 outputs).

    ``type='mmregnet.RegNet'`` because in mmdet's scope plain ``'RegNet'`` is
    mmdet's own class. Stage 0 frozen, BN in eval mode, ImageNet weights. With
    a stride-1 first stage the config says ``with_stem=True``, which the
    backbone asks for there (it is otherwise mmdet3d's stem-less layout).

    Args:
        arch: A preset name or arch dict.
        **overrides: Backbone arguments that differ.
    """
    get_arch(arch)
    cfg = dict(_delete_=True, type='mmregnet.RegNet', arch=arch, out_indices=(0, 1, 2, 3),
               frozen_stages=1, norm_cfg=dict(type='BN', requires_grad=True),
               norm_eval=True)
    cfg.update(_with_weights(arch, overrides))
    if tuple(cfg.get('strides') or (2,))[0] == 1:
        cfg.setdefault('with_stem', True)
    return cfg


def _with_weights(arch: ArchLike, overrides: Dict[str, Any]) -> Dict[str, Any]:
    """``overrides`` plus the ImageNet ``init_cfg`` where it exists and none is given."""
    weights = pretrained(arch)
    if 'init_cfg' in overrides or weights is None:
        return overrides
    return dict(overrides, init_cfg=weights)


def config_text(key: str, cfg: Dict[str, Any]) -> str:
    """``key=dict(...)`` as config text that pastes into a ``model=dict(...)``.

    One argument a line when there are more than two.

    >>> print(config_text('pts_neck', dict(in_channels=[64, 160, 384])), end='')
    pts_neck=dict(in_channels=[64, 160, 384]),
    """
    if len(cfg) <= 2:
        return f'{key}={value_text(cfg)},\n'
    lines = [f'    {k}={value_text(v)},' for k, v in cfg.items()]
    return f'{key}=dict(\n' + '\n'.join(lines)[:-1] + '),\n'


def value_text(value: Any) -> str:
    """A config value as Python source, dicts written ``dict(a=1)`` as config files do."""
    if isinstance(value, dict) and all(isinstance(k, str) and k.isidentifier() for k in value):
        return 'dict(' + ', '.join(f'{k}={value_text(v)}' for k, v in value.items()) + ')'
    if isinstance(value, list):
        return '[' + ', '.join(value_text(v) for v in value) + ']'
    if isinstance(value, tuple):
        return '(' + ', '.join(value_text(v) for v in value) + (',)' if len(value) == 1 else ')')
    return repr(value)
