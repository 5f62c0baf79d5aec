"""Checks of the RegNet backbone's arguments, made before anything is allocated.

Each check raises :class:`~mmregnet.errors.InputError` (a ``ValueError``)
naming the argument, the rule and the value. Booleans are refused wherever an
integer is meant (``True`` would otherwise pass as 1), and sizes are bounded
so that a typo fails at once instead of exhausting the machine's memory.
"""
import warnings
from typing import Any, Dict, Optional, Sequence, Tuple

from ..arch import MAX_STRIDE, MAX_WIDTH, PRESETS, ArchSpec, arch_name
from ..checks import check_bool, check_int, is_int, shown
from ..complexity import complexity
from ..errors import InputError

__all__ = ['MAX_PARAMS', 'MAX_STRIDE', 'check_bool', 'check_channels', 'check_int',
           'check_out_indices', 'check_per_stage', 'check_size']

#: Most parameters of a backbone: above SEER's RegNet-10B (8.8e9), the largest published.
MAX_PARAMS = 10 ** 10


def _as_tuple(name: str, values: Any, example: str) -> Tuple[Any, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise InputError(f'{name} must be a sequence such as {example}, got {values!r} '
                         f'({type(values).__name__})')
    return tuple(values)


def check_per_stage(name: str, values: Any, num_stages: int,
                    high: int = MAX_STRIDE) -> Tuple[int, ...]:
    """One integer in ``1..high`` per stage (strides, dilations).

    Raises:
        InputError: Not a sequence, the wrong length, or a bad entry.
    """
    values = _as_tuple(name, values, '(1, 2, 2, 2)')
    if len(values) != num_stages or not all(is_int(v) and v >= 1 for v in values):
        raise InputError(f'{name} must give a positive integer for each of the arch\'s '
                         f'{num_stages} stages, got {shown(values)}')
    if max(values) > high:
        raise InputError(f'{name} must give a positive integer for each of the arch\'s '
                         f'{num_stages} stages, each at most {high}, got {values}')
    return tuple(int(v) for v in values)


def check_out_indices(values: Any, num_stages: int) -> Tuple[int, ...]:
    """Increasing stage indices in ``0..num_stages - 1``.

    Outputs come in stage order, so only increasing indices keep
    ``out_channels`` aligned with them.

    Raises:
        InputError: A single int, an empty or unordered sequence, or a bad index.
    """
    if is_int(values):
        raise InputError(f'out_indices must be a sequence of stage indices, e.g. '
                         f'({values},) or (0, 1, 2, 3), got the integer {values!r}')
    values = _as_tuple('out_indices', values, '(0, 1, 2, 3)')
    if (not values or not all(is_int(i) and 0 <= i < num_stages for i in values)
            or list(values) != sorted(set(values))):
        raise InputError(f'out_indices must be increasing stage indices in 0..{num_stages - 1} '
                         f'(the arch has {num_stages} stages), got {shown(values)}')
    return tuple(int(i) for i in values)


def check_size(arch: ArchSpec, in_channels: int, with_stem: bool, stem_channels: int,
               strides: Sequence[int], dilations: Sequence[int]) -> int:
    """The backbone's parameter count, counted analytically (nothing is built).

    Returns:
        The number of parameters.

    Raises:
        InputError: More than :data:`MAX_PARAMS`.
    """
    params = complexity(arch, input_size=1, num_classes=None, in_channels=in_channels,
                        with_stem=with_stem, stem_channels=stem_channels, strides=strides,
                        dilations=dilations)['params']
    if params > MAX_PARAMS:
        raise InputError(f'RegNet {arch.to_dict()} (in_channels={in_channels}) would have '
                         f'{params:.3g} parameters; at most {MAX_PARAMS:.0e} are allowed')
    return params


def check_channels(name: str, value: Any) -> int:
    """A channel count in ``1..MAX_WIDTH``."""
    return check_int(name, value, 1, MAX_WIDTH,
                     f'a positive integer, at most {MAX_WIDTH}')


# mmdet's RegNet arguments (it inherits them from ResNet) -------------------------------------

#: Where the stride of a stage's first block goes: the 3x3 conv ('pytorch') or the first 1x1.
STYLES = ('pytorch', 'caffe')
#: mmcv's deformable convs, as mmdet's ``dcn`` names them.
DCN_TYPES = ('DCN', 'DCNv2')
#: Plain convolutions: every conv is an ``nn.Conv2d``, which deployment folds BatchNorms into.
PLAIN_CONV_CFGS = (None, dict(type='Conv2d'), dict(type='Conv'))


def library_defaults(scope: Optional[str], num_stages: int) -> Dict[str, Any]:
    """``out_indices`` and ``norm_eval`` when a config leaves them out: the two defaults
    on which the RegNets this one replaces differ.

    Built in mmpretrain's scope (an mmpretrain config), they are mmpretrain's: the
    last stage only, and BatchNorm statistics updated in training (a classifier
    trained from scratch needs them). Anywhere else they are mmdet's: every stage
    (mmdet's ``(0, 1, 2, 3)`` for four stages) and frozen statistics.

    >>> library_defaults('mmpretrain', 4), library_defaults('mmdet3d', 4)
    ({'out_indices': (3,), 'norm_eval': False}, {'out_indices': (0, 1, 2, 3), 'norm_eval': True})

    Args:
        scope: The default scope the backbone is built in, or None.
        num_stages: The arch's stages.
    """
    if scope == 'mmpretrain':
        return dict(out_indices=(num_stages - 1,), norm_eval=False)
    return dict(out_indices=tuple(range(num_stages)), norm_eval=True)


def refuse_unless_off(name: str, value: Any, off: Any, supported: str) -> None:
    """Refuses an mmdet option that would build a network this backbone does not build.

    Raises:
        InputError: ``value`` is not ``off``.
    """
    if value is not off and value != off:
        raise InputError(f'{name}={value!r} is not supported by mmregnet\'s RegNet; '
                         f'supported: {supported}')


def check_style(style: Any) -> str:
    """``'pytorch'`` (stride on the 3x3 conv) or ``'caffe'`` (on the first 1x1), as mmdet."""
    if style not in STYLES:
        raise InputError(f'style must be one of {", ".join(map(repr, STYLES))} (where a '
                         f'stage\'s stride goes: the 3x3 conv or the first 1x1), got {style!r}')
    return style


def check_conv_cfg(conv_cfg: Any) -> None:
    """Accepts the plain-convolution configs only (None, ``dict(type='Conv2d')``)."""
    if conv_cfg not in PLAIN_CONV_CFGS:
        raise InputError(f'conv_cfg={conv_cfg!r} is not supported by mmregnet\'s RegNet; '
                         "supported: None or dict(type='Conv2d') (plain convolutions; "
                         'deformable 3x3 convs through dcn)')


def check_stage_dcn(dcn: Any, stage_with_dcn: Any, num_stages: int) -> Tuple[Optional[Dict], ...]:
    """Each stage's deformable-conv config, as mmdet's ``dcn`` and ``stage_with_dcn`` mean it.

    Args:
        dcn: None, or ``dict(type='DCN' | 'DCNv2', deform_groups=G, fallback_on_stride=False)``.
        stage_with_dcn: One bool per stage (mmdet's default, four Falses, is accepted
            whatever the number of stages while ``dcn`` is None).
        num_stages: The arch's stages.

    Returns:
        Per stage, the mmcv conv config of its 3x3 convs, or None.

    Raises:
        InputError: A bad ``dcn`` or ``stage_with_dcn``.
    """
    flags = _as_tuple('stage_with_dcn', stage_with_dcn, '(False, True, True, True)')
    if not all(isinstance(f, bool) for f in flags):
        raise InputError(f'stage_with_dcn must give True or False for each stage, got {flags!r}')
    if dcn is None:
        return (None,) * num_stages
    rule = (f"None or a dict with type {' or '.join(map(repr, DCN_TYPES))}, deform_groups (a "
            "positive integer) and fallback_on_stride=False")
    if not isinstance(dcn, dict) or dcn.get('type') not in DCN_TYPES or not set(dcn) <= {
            'type', 'deform_groups', 'fallback_on_stride'}:
        raise InputError(f'dcn must be {rule}, got {dcn!r}')
    check_int('dcn deform_groups', dcn.get('deform_groups', 1), 1, MAX_WIDTH)
    refuse_unless_off('dcn fallback_on_stride', dcn.get('fallback_on_stride', False), False,
                      'False (every 3x3 conv of a stage in stage_with_dcn is deformable)')
    if len(flags) != num_stages:
        raise InputError(f'stage_with_dcn must give True or False for each of the arch\'s '
                         f'{num_stages} stages, got {flags!r}')
    conv = {k: v for k, v in dcn.items() if k != 'fallback_on_stride'}
    return tuple(dict(conv) if on else None for on in flags)


def pretrained_init_cfg(pretrained: Any, init_cfg: Any) -> Any:
    """mmdet's deprecated ``pretrained`` as the ``init_cfg`` it stands for.

    Returns:
        ``init_cfg``, or ``dict(type='Pretrained', checkpoint=pretrained)`` for a path.

    Raises:
        InputError: Both given, or ``pretrained`` that is neither a path nor None.
    """
    if pretrained is None:
        return init_cfg
    if not isinstance(pretrained, str):
        raise InputError(f'pretrained must be a checkpoint path or None, got {pretrained!r}')
    if init_cfg:
        raise InputError(f'give init_cfg or pretrained, not both (pretrained={pretrained!r}, '
                         f'init_cfg={init_cfg!r}); pretrained is deprecated: use '
                         f'init_cfg=dict(type=\'Pretrained\', checkpoint={pretrained!r})')
    warnings.warn(f'pretrained is deprecated: use init_cfg=dict(type=\'Pretrained\', '
                  f'checkpoint={pretrained!r})')
    return dict(type='Pretrained', checkpoint=pretrained)


def check_with_stem(with_stem: Any, strides: Sequence[int], stem_channels: int) -> bool:
    """Whether to build the stem; unsaid, the stem is built unless the arguments are
    mmdet3d's stem-less ones.

    mmdet3d's ``NoStemRegNet`` takes a pseudo image of ``stem_channels`` channels
    and keeps its resolution in the first stage (``strides[0] == 1``). Those arguments
    given to a RegNet with a stem build a network that expects 3-channel images,
    so they are refused here, at build time, naming what was meant.

    Raises:
        InputError: ``with_stem`` not a bool, or unsaid with ``strides[0] == 1``.
    """
    if with_stem is not None:
        return check_bool('with_stem', with_stem)
    if strides[0] == 1:
        raise InputError(
            f'RegNet got strides[0]=1 and stem_channels={stem_channels} without with_stem: '
            f'these are mmdet3d\'s NoStemRegNet arguments (no stem; stem_channels is the '
            f'pseudo image\'s channels). For that network use type=\'mmregnet.NoStemRegNet\', '
            f'or with_stem=False, in_channels={stem_channels}; for a stem followed by a '
            f'stride-1 stage say with_stem=True')
    return True


def check_open_mmlab_arch(checkpoint: Any, arch: ArchSpec, allow_partial: bool = False) -> None:
    """Refuses an ``open-mmlab://<preset>`` Pretrained checkpoint of another arch.

    mmengine loads such a checkpoint leaving every tensor of the wrong shape
    random, which a config that changes only ``arch`` (over a base config
    with ImageNet weights) would otherwise do without a word. The name is the
    arch: ``open-mmlab://regnetx_400mf`` holds :data:`~mmregnet.arch.PRESETS`'s
    ``regnetx_400mf``.

    >>> check_open_mmlab_arch('open-mmlab://regnetx_400mf', PRESETS['regnetx_400mf'])

    Raises:
        InputError: Another preset's weights, unless ``allow_partial``.
    """
    prefix = 'open-mmlab://'
    if allow_partial or not isinstance(checkpoint, str) or not checkpoint.startswith(prefix):
        return
    held = checkpoint[len(prefix):]
    if held not in PRESETS or PRESETS[held] == arch:
        return
    built = arch_name(arch) or arch.to_dict()
    raise InputError(f'init_cfg checkpoint {checkpoint!r} holds {held} weights but the backbone '
                     f'is {built}, so most of it would stay random: set init_cfg=None, point it '
                     f'at {built} weights (tools/model_converters/regnet2mmdet.py converts '
                     f'pycls, timm and torchvision ones), or add allow_partial=True')
