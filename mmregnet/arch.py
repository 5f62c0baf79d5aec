"""The RegNet design space as data: the preset table and the quantized linear rule.

Every consumer (the backbone, the complexity code, the CLI, the configs and the
tests) reads architectures from :data:`PRESETS` through :func:`get_arch`, and
derives stages with :meth:`ArchSpec.design`. Nothing else in the package knows
a preset's numbers.

Example:
    >>> design = get_arch('regnetx_400mf').design()
    >>> design.widths, design.depths
    ((32, 64, 160, 384), (1, 2, 7, 12))
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from types import MappingProxyType
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from .checks import is_int
from .errors import InputError

#: pycls rounds every block width to a multiple of this.
WIDTH_QUANTUM = 8
#: How stage widths are made divisible by the group width (see ArchSpec.width_rounding).
WIDTH_ROUNDINGS = ('pycls', 'torchvision')
#: Most channels of any width, stem or input: far above every published RegNet
#: (SEER's 10B-parameter RegNet is 11648 wide), so only a typo reaches it.
MAX_WIDTH = 32768
#: Most blocks in a RegNet (published ones have at most 27).
MAX_DEPTH = 1024
#: Largest bottleneck ratio (every published model has 1).
MAX_BOT_MUL = 64.0
#: Largest stage stride or dilation of a backbone built from an arch (RegNets use 1 and 2).
MAX_STRIDE = 64


@dataclass(frozen=True)
class StageDesign:
    """Per-stage numbers derived from an :class:`ArchSpec`, as pycls derives them.

    Attributes:
        widths: Output channels of each stage.
        depths: Number of blocks in each stage.
        group_widths: Channels per group of each stage's 3x3 conv.
        bottleneck_widths: Channels inside each stage's bottleneck.
        block_widths: The quantized width of every block (length = depth).
        block_widths_cont: The continuous linear widths ``w0 + wa * j``.
    """

    widths: Tuple[int, ...]
    depths: Tuple[int, ...]
    group_widths: Tuple[int, ...]
    bottleneck_widths: Tuple[int, ...]
    block_widths: Tuple[int, ...]
    block_widths_cont: Tuple[float, ...]

    @property
    def num_stages(self) -> int:
        """Number of stages."""
        return len(self.widths)

    @property
    def groups(self) -> Tuple[int, ...]:
        """Number of groups of each stage's 3x3 conv."""
        return tuple(b // g for b, g in zip(self.bottleneck_widths, self.group_widths))

    def stage_strides(self, with_stem: bool = True,
                      strides: Optional[Tuple[int, ...]] = None) -> Tuple[int, ...]:
        """Stride of each stage's output relative to the input: what a backbone and its
        description report as ``out_strides``.

        Args:
            with_stem: Whether a stride-2 stem comes first.
            strides: Each stage's stride (default 2 everywhere).
        """
        total, result = 2 if with_stem else 1, []
        for s in strides or (2,) * self.num_stages:
            total *= s
            result.append(total)
        return tuple(result)


@dataclass(frozen=True)
class ArchSpec:
    """One RegNet: the five numbers of the paper plus bottleneck and SE ratios.

    Attributes:
        w0: Initial width, a positive multiple of 8 (at most :data:`MAX_WIDTH`).
        wa: Slope of the linear width function (0 to :data:`MAX_WIDTH`).
        wm: Width multiplier between stages (> 1).
        depth: Total number of blocks (1 to :data:`MAX_DEPTH`).
        group_w: Group width of the 3x3 convs (1 to :data:`MAX_WIDTH`).
        bot_mul: Bottleneck ratio (> 0, at most :data:`MAX_BOT_MUL`); 1 for
            every published model. Stage and bottleneck widths must come out
            in ``1..MAX_WIDTH`` (checked by :meth:`design`).
        se_ratio: Squeeze-and-excitation width as a fraction of each block's
            input width (RegNetY: 0.25), or None for no SE (RegNetX).
        width_rounding: How each stage's bottleneck width is made a multiple of
            its group width: ``'pycls'`` (nearest, ties to even; every preset)
            or ``'torchvision'`` (torchvision's rule: half up, at least one
            group, never below 90%), which gives torchvision's X-400MF,
            X-4.0GF, Y-800MF, Y-4.0GF and Y-8.0GF other stage widths.
    """

    w0: int
    wa: float
    wm: float
    depth: int
    group_w: int
    bot_mul: float = 1.0
    se_ratio: Optional[float] = None
    width_rounding: str = 'pycls'

    def __post_init__(self) -> None:
        for name, ok, rule in (
            ('w0', is_int(self.w0) and 0 < self.w0 <= MAX_WIDTH
             and self.w0 % WIDTH_QUANTUM == 0,
             f'a positive integer multiple of {WIDTH_QUANTUM}, at most {MAX_WIDTH}'),
            ('wa', _is_real(self.wa) and 0 <= self.wa <= MAX_WIDTH,
             f'a number >= 0, at most {MAX_WIDTH}'),
            ('wm', _is_real(self.wm) and self.wm > 1, 'a number > 1'),
            ('depth', is_int(self.depth) and 1 <= self.depth <= MAX_DEPTH,
             f'an integer >= 1, at most {MAX_DEPTH}'),
            ('group_w', is_int(self.group_w) and 1 <= self.group_w <= MAX_WIDTH,
             f'an integer >= 1, at most {MAX_WIDTH}'),
            ('bot_mul', _is_real(self.bot_mul) and 0 < self.bot_mul <= MAX_BOT_MUL,
             f'a number > 0, at most {MAX_BOT_MUL:g}'),
            ('se_ratio', self.se_ratio is None
             or (_is_real(self.se_ratio) and 0 < self.se_ratio <= 1),
             'None or a number in (0, 1]'),
            ('width_rounding', self.width_rounding in WIDTH_ROUNDINGS,
             ' or '.join(map(repr, WIDTH_ROUNDINGS))),
        ):
            if not ok:
                raise ValueError(
                    f'RegNet arch field {name!r} must be {rule}, got {getattr(self, name)!r}')

    def design(self) -> StageDesign:
        """Derives stage widths, depths and group widths (pycls's rule, exactly).

        Raises:
            ValueError: A block, stage or bottleneck width outside
                ``1..MAX_WIDTH`` (the fields are valid but extreme together).
        """
        block_widths, block_widths_cont = generate_block_widths(
            self.w0, self.wa, self.wm, self.depth)
        widths, depths = group_blocks_into_stages(block_widths)
        if any(int(w * self.bot_mul) < 1 for w in widths):
            raise ValueError(f'RegNet arch {self.to_dict()} has a bottleneck narrower than one '
                             f'channel (stage widths {widths} x bot_mul {self.bot_mul})')
        widths, group_widths = adjust_widths_and_groups(
            widths, self.bot_mul, self.group_w, self.width_rounding)
        bottleneck_widths = [int(round(w * self.bot_mul)) for w in widths]
        if max(widths + bottleneck_widths) > MAX_WIDTH or min(widths) < 1:
            raise ValueError(f'RegNet arch {self.to_dict()} gives stage widths {widths} and '
                             f'bottleneck widths {bottleneck_widths}; each must be in '
                             f'1..{MAX_WIDTH}')
        return StageDesign(
            widths=tuple(widths),
            depths=tuple(depths),
            group_widths=tuple(group_widths),
            bottleneck_widths=tuple(bottleneck_widths),
            block_widths=tuple(block_widths),
            block_widths_cont=tuple(block_widths_cont))

    def to_dict(self) -> Dict[str, Any]:
        """Returns the arch as the dict a config accepts (optional fields only if set)."""
        d = asdict(self)
        if d['se_ratio'] is None:
            del d['se_ratio']
        if d['width_rounding'] == 'pycls':
            del d['width_rounding']
        return d


def _is_real(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def se_width(in_channels: int, se_ratio: Optional[float]) -> int:
    """Squeeze width of a block's SE unit: ``se_ratio`` x the block's input width, 0 for no SE."""
    return int(round(in_channels * se_ratio)) if se_ratio else 0


def quantize_float(value: float, divisor: int) -> int:
    """Rounds ``value`` to the nearest multiple of ``divisor``."""
    return int(round(value / divisor) * divisor)


def generate_block_widths(w0: int, wa: float, wm: float, depth: int,
                          quantum: int = WIDTH_QUANTUM) -> Tuple[List[int], List[float]]:
    """Per-block widths of the quantized linear rule.

    Each block ``j`` has the continuous width ``u_j = w0 + wa * j``; it is
    snapped to ``w0 * wm ** round(log(u_j / w0) / log(wm))`` and rounded to a
    multiple of ``quantum``.

    Returns:
        The quantized widths and the continuous widths, one per block.

    Raises:
        ValueError: A width above :data:`MAX_WIDTH` (checked before it is made an integer).
    """
    # numpy's float64 log/power, in pycls's order of operations, so rounding agrees bit for bit.
    cont = np.arange(depth) * wa + w0
    ks = np.round(np.log(cont / w0) / np.log(wm))
    with np.errstate(over='ignore'):  # an overflow is inf, refused just below
        widths = np.round(np.divide(w0 * np.power(wm, ks), quantum)) * quantum
    if not np.all(widths <= MAX_WIDTH):
        raise ValueError(f'RegNet widths w0={w0}, wa={wa}, wm={wm}, depth={depth} reach '
                         f'{float(widths.max()):g} channels; at most {MAX_WIDTH} are allowed')
    return widths.astype(int).tolist(), cont.tolist()


def group_blocks_into_stages(block_widths: List[int]) -> Tuple[List[int], List[int]]:
    """Groups consecutive blocks of equal width into stages.

    Returns:
        Each stage's width and number of blocks.
    """
    widths: List[int] = []
    depths: List[int] = []
    for w in block_widths:
        if widths and widths[-1] == w:
            depths[-1] += 1
        else:
            widths.append(w)
            depths.append(1)
    return widths, depths


def make_divisible(value: float, divisor: int) -> int:
    """torchvision's rounding: half up to a multiple of ``divisor``, at least
    ``divisor``, and one ``divisor`` more if rounding lost over 10%."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def adjust_widths_and_groups(widths: List[int], bot_mul: float, group_w: int,
                             rounding: str = 'pycls') -> Tuple[List[int], List[int]]:
    """Makes each stage's bottleneck width divisible by its group width.

    The group width is capped at the bottleneck width, then the bottleneck
    width is rounded to a multiple of it (``rounding``: ``'pycls'`` nearest,
    ``'torchvision'`` :func:`make_divisible`) and the stage width recomputed.
    """
    bottleneck = [int(w * bot_mul) for w in widths]
    group_widths = [min(group_w, b) for b in bottleneck]
    snap = quantize_float if rounding == 'pycls' else make_divisible
    bottleneck = [snap(b, g) for b, g in zip(bottleneck, group_widths)]
    return [int(b / bot_mul) for b in bottleneck], group_widths


def _x(w0, wa, wm, depth, group_w):
    return ArchSpec(w0=w0, wa=wa, wm=wm, depth=depth, group_w=group_w)


def _y(w0, wa, wm, depth, group_w):
    return ArchSpec(w0=w0, wa=wa, wm=wm, depth=depth, group_w=group_w, se_ratio=0.25)


#: The pycls model zoo (Radosavovic et al., 2020), named as mmdet names RegNetX.
PRESETS: Mapping[str, ArchSpec] = {
    'regnetx_200mf': _x(24, 36.44, 2.49, 13, 8),
    'regnetx_400mf': _x(24, 24.48, 2.54, 22, 16),
    'regnetx_600mf': _x(48, 36.97, 2.24, 16, 24),
    'regnetx_800mf': _x(56, 35.73, 2.28, 16, 16),
    'regnetx_1.6gf': _x(80, 34.01, 2.25, 18, 24),
    'regnetx_3.2gf': _x(88, 26.31, 2.25, 25, 48),
    'regnetx_4.0gf': _x(96, 38.65, 2.43, 23, 40),
    'regnetx_6.4gf': _x(184, 60.83, 2.07, 17, 56),
    'regnetx_8.0gf': _x(80, 49.56, 2.88, 23, 120),
    'regnetx_12gf': _x(168, 73.36, 2.37, 19, 112),
    'regnetx_16gf': _x(216, 55.59, 2.1, 22, 128),
    'regnetx_32gf': _x(320, 69.86, 2.0, 23, 168),
    'regnety_200mf': _y(24, 36.44, 2.49, 13, 8),
    'regnety_400mf': _y(48, 27.89, 2.09, 16, 8),
    'regnety_600mf': _y(48, 32.54, 2.32, 15, 16),
    'regnety_800mf': _y(56, 38.84, 2.4, 14, 16),
    'regnety_1.6gf': _y(48, 20.71, 2.65, 27, 24),
    'regnety_3.2gf': _y(80, 42.63, 2.66, 21, 24),
    'regnety_4.0gf': _y(96, 31.41, 2.24, 22, 64),
    'regnety_6.4gf': _y(112, 33.22, 2.27, 25, 72),
    'regnety_8.0gf': _y(192, 76.82, 2.19, 17, 56),
    'regnety_12gf': _y(168, 73.36, 2.37, 19, 112),
    'regnety_16gf': _y(200, 106.23, 2.48, 18, 112),
    'regnety_32gf': _y(232, 115.89, 2.53, 20, 232),
}


def timm_name(preset: str) -> str:
    """timm's name of a preset: the family, then the flops in units of 100 MF as three digits.

    Args:
        preset: A name from :data:`PRESETS`, e.g. ``'regnetx_1.6gf'``.

    Returns:
        timm's name, e.g. ``'regnetx_016'`` (``'regnety_320'`` for ``'regnety_32gf'``).
    """
    family, size = preset.split('_')
    mflops = float(size[:-2]) * (1000 if size.endswith('gf') else 1)
    return f'{family}_{round(mflops / 100):03d}'


#: Other names of the presets (timm's ``regnetx_002`` ... ``regnety_320``) -> the preset's name.
#: Derived from :data:`PRESETS`, so there is one table of numbers.
ALIASES: Mapping[str, str] = MappingProxyType({timm_name(n): n for n in PRESETS})
#: How the presets can be named: ``mmdet`` (the table's keys) or ``timm``.
NAMINGS = ('mmdet', 'timm')


_REQUIRED = ('w0', 'wa', 'wm', 'depth', 'group_w', 'bot_mul')
_ALLOWED = tuple(f.name for f in fields(ArchSpec))

ArchLike = Union[str, Mapping[str, Any], ArchSpec]


def get_arch(arch: ArchLike) -> ArchSpec:
    """Resolves a preset name, an arch dict or an :class:`ArchSpec`.

    Args:
        arch: A name from :data:`PRESETS` or its timm name (:data:`ALIASES`,
            ``'regnety_016'``), or a dict with ``w0``, ``wa``,
            ``wm``, ``depth``, ``group_w``, ``bot_mul`` and optionally
            ``se_ratio`` (mmdet's format), or an :class:`ArchSpec`.

    Raises:
        ValueError: An unknown name (the message lists the valid ones), or a
            dict with a missing, unknown or invalid field.
        TypeError: Anything else.
    """
    if isinstance(arch, ArchSpec):
        return arch
    if isinstance(arch, str):
        name = ALIASES.get(arch, arch)
        if name not in PRESETS:
            raise ValueError(f'unknown RegNet arch {arch!r}; expected one of: '
                             + ', '.join(PRESETS) + " (or timm's names: "
                             + ', '.join(ALIASES) + ')')
        return PRESETS[name]
    if isinstance(arch, Mapping):
        missing = [k for k in _REQUIRED if k not in arch]
        unknown = [k for k in arch if k not in _ALLOWED]
        if missing or unknown:
            raise ValueError(
                f'RegNet arch dict must have the fields {", ".join(_REQUIRED)} '
                f'(and optionally se_ratio, width_rounding); missing: {missing or "none"}, '
                f'unknown: {unknown or "none"}')
        return ArchSpec(**dict(arch))
    raise TypeError(f'RegNet arch must be a preset name or a dict, got {type(arch).__name__}')


def arch_from_text(text: str) -> Union[str, Dict[str, Any]]:
    """A command line's arch: a preset name as it is, or a JSON object of arch fields.

    The one parser of ``ARCH`` arguments (``mmregnet``, ``regnet2mmdet``); the
    result goes to :func:`get_arch`.

    >>> arch_from_text('{"w0": 24, "wa": 24.48}')
    {'w0': 24, 'wa': 24.48}

    Raises:
        InputError: Text that starts like JSON but is not a JSON object.
    """
    if not text.lstrip().startswith('{'):
        return text
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f'arch {text!r} looks like a JSON dict but is not valid JSON: {e}') \
            from None
    if not isinstance(value, dict):
        raise InputError(f'arch {text!r} must be a preset name or a JSON object of arch fields')
    return value


def arch_name(arch: ArchLike) -> Optional[str]:
    """Returns the preset name of ``arch`` if it equals a preset, else None."""
    spec = get_arch(arch)
    return next((name for name, p in PRESETS.items() if p == spec), None)
