"""The paper's design spaces as data, and one seeded draw from each.

Sources: Radosavovic et al., "Designing Network Design Spaces", CVPR 2020
("paper §n" below), and pycls, its reference code (``pycls/sweep/config.py``:
``REGNET_SAMPLER`` and ``CONSTRAINTS.REGNET.NUM_STAGES``; ``pycls/sweep/samplers.py``).
Every space yields 4-stage networks of residual bottleneck (X) blocks.

Example:
    >>> import numpy as np
    >>> net = SPACES['anynetx-e'].draw(np.random.default_rng(0))
    >>> len(net.depths), list(net.depths) == sorted(net.depths)
    (4, True)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..arch import ArchSpec, adjust_widths_and_groups

Number = Union[int, float]

#: Paper §3.1: the network body has 4 stages. pycls's sweeps keep RegNet samples to
#: exactly 4 (``CONSTRAINTS.REGNET.NUM_STAGES = [4, 4]``).
NUM_STAGES = 4
#: Paper §3.1, AnyNetX sampling: d_i <= 16 blocks per stage.
ANYNET_DEPTH = (1, 16)
#: Paper §3.1: w_i <= 1024 and divisible by 8.
ANYNET_WIDTH = (8, 1024, 8)
#: Paper §3.1: bottleneck ratio b_i in {1, 2, 4} (a block's inner width is w_i / b_i).
BOTTLENECK_RATIOS = (1, 2, 4)
#: Paper §3.1: group width g_i in {1, 2, ..., 32} (powers of 2).
GROUP_WIDTHS = (1, 2, 4, 8, 16, 32)
#: The paper's complexity regime for comparing spaces (§3.1: 360MF to 400MF).
PAPER_FLOPS_RANGE = (360_000_000, 400_000_000)
#: RegNetY is RegNetX plus squeeze-and-excitation of this ratio (paper §4).
SE_RATIO = 0.25


@dataclass(frozen=True)
class RegNetRanges:
    """Bounds of a RegNet space; each range is ``(low, high, quantum)``, closed.

    Attributes:
        depth: Total blocks d (drawn uniformly, as pycls draws it).
        w0: Initial width (log-uniform, a multiple of 8).
        wa: Slope (log-uniform).
        wm: Width multiplier (log-uniform).
        group_widths: Allowed group widths: a tuple (drawn uniformly, which for
            powers of 2 is log-uniform) or a ``range`` (drawn log-uniformly
            on its step, pycls's rule for ``GROUP_W``).
        bottleneck_ratios: Allowed b (``bot_mul = 1 / b``).
    """

    depth: Tuple[int, int]
    w0: Tuple[int, int, int]
    wa: Tuple[float, float, float]
    wm: Tuple[float, float, float]
    group_widths: Union[Tuple[int, ...], range]
    bottleneck_ratios: Tuple[int, ...]


#: Paper §3.3, the RegNet space: d < 64, w0 < 256, 0 < wa <= 256, 1.5 <= wm <= 3,
#: b and g as in AnyNetX (§3.1). Quanta of wa and wm are pycls's (0.1, 0.001).
PAPER_REGNET = RegNetRanges(depth=(1, 63), w0=(8, 248, 8), wa=(0.1, 256.0, 0.1),
                            wm=(1.5, 3.0, 0.001), group_widths=GROUP_WIDTHS,
                            bottleneck_ratios=BOTTLENECK_RATIOS)
#: The refined space the paper's models come from: b = 1 and wm >= 2 (paper §4);
#: 12 <= d <= 28, w0 in [8, 256] and wa in [8, 256] (pycls ``REGNET_SAMPLER``,
#: whose defaults "generate fairly good performing models up to 16GF"); group
#: widths multiples of 8 by pycls's ``GROUP_W`` rule, up to 256 rather than 128,
#: since pycls notes that larger models need larger ones (its zoo uses 168, 232).
REFINED_REGNET = RegNetRanges(depth=(12, 28), w0=(8, 256, 8), wa=(8.0, 256.0, 0.01),
                              wm=(2.0, 3.0, 0.01), group_widths=range(8, 257, 8),
                              bottleneck_ratios=(1,))


@dataclass(frozen=True)
class Net:
    """One network of a design space, described per stage.

    Attributes:
        depths: Blocks of each stage.
        widths: Output channels of each stage.
        bot_muls: Inner width / width of each stage (``1 / b``).
        group_widths: Group width of each stage's 3x3 conv.
        se_ratio: Squeeze-and-excitation ratio, or None.
        arch: The RegNet parameters, for nets of a RegNet space; else None.
    """

    depths: Tuple[int, ...]
    widths: Tuple[int, ...]
    bot_muls: Tuple[float, ...]
    group_widths: Tuple[int, ...]
    se_ratio: Optional[float] = None
    arch: Optional[ArchSpec] = None


@dataclass(frozen=True)
class Space:
    """A named design space: how one network is drawn from it.

    Attributes:
        name: The ``--space`` name.
        description: What constrains it, with its source.
        draw: ``draw(rng)`` returns a :class:`Net`, or None for a draw the
            space rejects (the caller draws again).
    """

    name: str
    description: str
    draw: Callable[[np.random.Generator], Optional[Net]]


def log_uniform(rng: np.random.Generator, low: Number, high: Number, quantum: Number) -> Number:
    """Draws log-uniformly from ``[low, high]``, rounded to a multiple of ``quantum``.

    Args:
        rng: The random generator.
        low: Lowest value (> 0, a multiple of ``quantum``).
        high: Highest value (a multiple of ``quantum``).
        quantum: Step of the result; an int quantum gives an int.

    Returns:
        The value, within ``[low, high]``.
    """
    value = math.exp(rng.uniform(math.log(low), math.log(high)))
    steps = min(max(round(value / quantum), math.ceil(low / quantum - 1e-9)),
                math.floor(high / quantum + 1e-9))
    return steps * quantum if isinstance(quantum, int) else round(steps * quantum, 6)


def draw_group_width(rng: np.random.Generator, choices: Union[Tuple[int, ...], range]) -> int:
    """Draws a group width: uniformly from a tuple, log-uniformly from a ``range``."""
    if isinstance(choices, range):
        return int(log_uniform(rng, choices[0], choices[-1], choices.step))
    return int(rng.choice(choices))


def regnet_stage_count_ok(arch: ArchSpec) -> bool:
    """Whether a RegNet has exactly :data:`NUM_STAGES` stages and skips no stage index.

    pycls rejects a sample whose quantized widths skip a power of ``wm`` or merge
    two of them (``check_regnet_constraints``: ``num_stages == max_stage``).
    """
    design = arch.design()
    cont = np.asarray(design.block_widths_cont)
    # The stage index of each block, the exponent of wm in the quantized rule.
    ks = np.round(np.log(cont / arch.w0) / np.log(arch.wm))
    return design.num_stages == NUM_STAGES and int(ks.max()) + 1 == NUM_STAGES


def regnet_net(arch: ArchSpec) -> Net:
    """The per-stage description of a RegNet."""
    d = arch.design()
    return Net(depths=d.depths, widths=d.widths, bot_muls=(arch.bot_mul,) * d.num_stages,
               group_widths=d.group_widths, se_ratio=arch.se_ratio, arch=arch)


def draw_regnet(rng: np.random.Generator, ranges: RegNetRanges,
                se_ratio: Optional[float]) -> Optional[Net]:
    """Draws one RegNet the way pycls's ``regnet_sampler`` does; None if it has not 4 stages.

    Args:
        rng: The random generator.
        ranges: The space's bounds.
        se_ratio: None (RegNetX) or :data:`SE_RATIO` (RegNetY).

    Returns:
        The net, or None when the drawn parameters break :func:`regnet_stage_count_ok`.
    """
    arch = ArchSpec(
        depth=int(rng.integers(ranges.depth[0], ranges.depth[1] + 1)),
        w0=int(log_uniform(rng, *ranges.w0)), wa=float(log_uniform(rng, *ranges.wa)),
        wm=float(log_uniform(rng, *ranges.wm)),
        group_w=draw_group_width(rng, ranges.group_widths),
        bot_mul=1.0 / int(rng.choice(ranges.bottleneck_ratios)), se_ratio=se_ratio)
    return regnet_net(arch) if regnet_stage_count_ok(arch) else None


def _draw_stages(rng: np.random.Generator, draw_one: Callable[[], Number], shared: bool,
                 increasing: bool) -> List[Number]:
    if shared:
        return [draw_one()] * NUM_STAGES
    while True:
        # Redrawing until sorted draws from the constrained space exactly (sorting would not).
        values = [draw_one() for _ in range(NUM_STAGES)]
        if not increasing or values == sorted(values):
            return values


def draw_anynetx(rng: np.random.Generator, shared_b: bool = False, shared_g: bool = False,
                 increasing_w: bool = False, increasing_d: bool = False) -> Net:
    """Draws one AnyNetX net (paper §3.1, with §3.2's constraints as flags).

    Depths and widths are drawn log-uniformly, b and g uniformly from their
    sets of powers of 2 (which is log-uniform too), as the paper samples.

    Args:
        rng: The random generator.
        shared_b: One bottleneck ratio for all stages (AnyNetX_B on).
        shared_g: One group width for all stages (AnyNetX_C on).
        increasing_w: ``w_{i+1} >= w_i`` (AnyNetX_D on).
        increasing_d: ``d_{i+1} >= d_i`` (AnyNetX_E).

    Returns:
        The net; widths and groups made compatible as pycls makes them.
    """
    depths = _draw_stages(rng, lambda: int(log_uniform(rng, *ANYNET_DEPTH, 1)), False,
                          increasing_d)
    widths = _draw_stages(rng, lambda: int(log_uniform(rng, *ANYNET_WIDTH)), False,
                          increasing_w)
    bs = _draw_stages(rng, lambda: int(rng.choice(BOTTLENECK_RATIOS)), shared_b, False)
    gs = _draw_stages(rng, lambda: int(rng.choice(GROUP_WIDTHS)), shared_g, False)
    stages = [adjust_widths_and_groups([w], 1.0 / b, g) for w, b, g in zip(widths, bs, gs)]
    return Net(depths=tuple(depths), widths=tuple(ws[0] for ws, _ in stages),
               bot_muls=tuple(1.0 / b for b in bs), group_widths=tuple(g[0] for _, g in stages))


def _anynet_space(name: str, flags: Sequence[bool], rule: str) -> Space:
    return Space(name, rule, lambda rng: draw_anynetx(rng, *flags))


def _regnet_space(name: str, ranges: RegNetRanges, se_ratio: Optional[float],
                  rule: str) -> Space:
    return Space(name, rule, lambda rng: draw_regnet(rng, ranges, se_ratio))


#: Every space ``mmregnet sample --space`` knows, by name.
SPACES: Dict[str, Space] = {s.name: s for s in (
    _anynet_space('anynetx-a', (False,) * 4,
                  'paper §3.1: per stage d<=16, w<=1024 (x8), b in {1,2,4}, g in {1..32}'),
    _anynet_space('anynetx-b', (True, False, False, False), 'AnyNetX_A with a shared b'),
    _anynet_space('anynetx-c', (True, True, False, False), 'AnyNetX_B with a shared g'),
    _anynet_space('anynetx-d', (True, True, True, False), 'AnyNetX_C with w_{i+1} >= w_i'),
    _anynet_space('anynetx-e', (True,) * 4, 'AnyNetX_D with d_{i+1} >= d_i'),
    _regnet_space('regnetx', PAPER_REGNET, None,
                  'paper §3.3: d<64, w0<256, 0<wa<=256, 1.5<=wm<=3, b and g as AnyNetX'),
    _regnet_space('regnety', PAPER_REGNET, SE_RATIO, 'RegNetX plus SE (ratio 0.25)'),
    _regnet_space('regnetx-refined', REFINED_REGNET, None,
                  'paper §4 and pycls: b=1, 12<=d<=28, 2<=wm<=3, g multiple of 8'),
    _regnet_space('regnety-refined', REFINED_REGNET, SE_RATIO, 'refined RegNetX plus SE'),
)}
