"""Finds RegNets of a target complexity in the refined RegNet space.

The search is seeded and deterministic. It draws "shapes" (depth, w0, wm,
group width) from :data:`~.space.REFINED_REGNET` the way pycls's sampler does,
and for each one bisects the slope ``wa`` (in steps of 0.01) towards the target
flops: flops grow with ``wa``, up to the jumps of the quantized width rule.
Every net it evaluates that has 4 stages, lies within the tolerance and meets
the params/acts caps is a candidate; each shape keeps its best candidate, and
identical stage designs count once.

Example:
    >>> best = search(Target(flops=400e6))[0]
    >>> abs(best.flops / 400e6 - 1) <= 0.02
    True
"""
from __future__ import annotations

import math
from dataclasses import astuple, dataclass
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from ..arch import ArchSpec
from .formatting import format_size
from .measure import Measure
from .space import REFINED_REGNET, SE_RATIO, draw_group_width, log_uniform, \
    regnet_stage_count_ok

#: How ``search`` orders its results: by distance to the target flops, or by
#: activations (the paper, §4, finds GPU runtime tracks them) or params, fewest first.
RANKS = ('distance', 'acts', 'params')
#: Shapes drawn before the search may stop early.
MIN_SHAPES = 32
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Target:
    """What ``search`` looks for.

    Attributes:
        flops: Target multiply-adds (> 0).
        tolerance: Accepted relative distance to ``flops`` (0.02 = 2%).
        params_max: Most parameters allowed, or None.
        acts_max: Most activations allowed, or None.
    """

    flops: float
    tolerance: float = 0.02
    params_max: Optional[float] = None
    acts_max: Optional[float] = None

    def __post_init__(self) -> None:
        if not self.flops > 0:
            raise ValueError(f'the target flops must be > 0, got {self.flops!r}')
        if not 0 < self.tolerance < 1:
            raise ValueError(f'the tolerance must be in (0, 1), got {self.tolerance!r}')

    def deviation(self, flops: float) -> float:
        """Relative distance of ``flops`` from the target (signed)."""
        return flops / self.flops - 1

    def caps_ok(self, cx: Dict[str, int]) -> bool:
        """Whether a complexity meets the params and acts caps."""
        return ((self.params_max is None or cx['params'] <= self.params_max)
                and (self.acts_max is None or cx['acts'] <= self.acts_max))


@dataclass(frozen=True)
class Candidate:
    """A net the search found, with its complexity under the search's measure."""

    arch: ArchSpec
    params: int
    flops: int
    acts: int


class _Evaluator:
    """Complexity with a cache: archs with the same stage design cost the same."""

    def __init__(self, measure: Measure) -> None:
        self.measure = measure
        self._cache: Dict[Tuple, Dict[str, int]] = {}

    def __call__(self, arch: ArchSpec) -> Dict[str, int]:
        d = arch.design()
        key = (d.widths, d.depths, d.group_widths, arch.se_ratio)
        if key not in self._cache:
            self._cache[key] = self.measure(arch)
        return self._cache[key]


def _wa_range(depth: int, w0: int, wm: float) -> Tuple[int, int]:
    """The slopes (in hundredths) that can give 4 stages, within the space's bounds.

    The last block's width exponent ``log(1 + wa (depth - 1) / w0) / log(wm)``
    must round to 3, so ``1 + wa (depth - 1) / w0`` lies in ``[wm^2.5, wm^3.5)``.
    """
    low = w0 * (wm ** 2.5 - 1) / (depth - 1)
    high = w0 * (wm ** 3.5 - 1) / (depth - 1)
    return (max(math.ceil(low * 100), round(REFINED_REGNET.wa[0] * 100)),
            min(math.floor(high * 100), round(REFINED_REGNET.wa[1] * 100)))


def _bisect_wa(evaluate: _Evaluator, make: Callable[[int], ArchSpec], lo: int, hi: int,
               target: Target, visit: Callable[[ArchSpec, Dict[str, int]], None]) -> None:
    ends = []
    for k in (lo, hi):
        ends.append(evaluate(make(k)))
        visit(make(k), ends[-1])
    tol = target.tolerance
    if ends[0]['flops'] > target.flops * (1 + tol) or ends[1]['flops'] < target.flops * (1 - tol):
        return  # no slope reaches the target with this shape
    while hi - lo > 1:
        mid = (lo + hi) // 2
        cx = evaluate(make(mid))
        visit(make(mid), cx)
        lo, hi = (lo, mid) if cx['flops'] >= target.flops else (mid, hi)


def _rank_key(rank: str, target: Target) -> Callable[[Candidate], Tuple]:
    if rank not in RANKS:
        raise ValueError(f'unknown rank {rank!r}; expected one of: ' + ', '.join(RANKS))

    def key(c: Candidate) -> Tuple:
        distance = abs(target.deviation(c.flops))
        first = {'distance': distance, 'acts': c.acts, 'params': c.params}[rank]
        return (first, distance, c.acts, astuple(c.arch))
    return key


def search(target: Target, family: str = 'x', measure: Measure = Measure(), top: int = 5,
           rank: str = 'distance', seed: int = 0, max_shapes: int = 512,
           on_progress: Optional[Progress] = None) -> List[Candidate]:
    """Searches the refined RegNet space for nets at the target complexity.

    Args:
        target: The flops, tolerance and caps.
        family: ``'x'`` (RegNetX) or ``'y'`` (RegNetY: SE of ratio 0.25).
        measure: How complexity is counted (input size, stem, head).
        top: Number of results (>= 1).
        rank: One of :data:`RANKS`.
        seed: Seed of the shape draws; the same seed gives the same results.
        max_shapes: Most shapes drawn; the search stops earlier once
            ``max(2 * top, 10)`` shapes have given a candidate.
        on_progress: Called as ``on_progress(shapes_done, max_shapes)``.

    Returns:
        Up to ``top`` candidates, best first.

    Raises:
        ValueError: Bad arguments, or no candidate (the message says what the
            space reaches at this measure, or which cap no net met).
    """
    if family not in ('x', 'y'):
        raise ValueError(f"family must be 'x' or 'y', got {family!r}")
    for name, value in (('top', top), ('max_shapes', max_shapes)):
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f'{name} must be a positive integer, got {value!r}')
    key = _rank_key(rank, target)
    se_ratio = SE_RATIO if family == 'y' else None
    evaluate, rng = _Evaluator(measure), np.random.default_rng(seed)
    found: Dict[Tuple, Candidate] = {}
    near: List[Candidate] = []  # within tolerance but over a cap

    def visit(arch: ArchSpec, cx: Dict[str, int]) -> None:
        if abs(target.deviation(cx['flops'])) > target.tolerance or not regnet_stage_count_ok(arch):
            return
        if not target.caps_ok(cx):
            near.append(Candidate(arch, **cx))
            return
        # One candidate per shape, its best: neighbouring slopes give near-copies.
        shape, candidate = (arch.w0, arch.wm, arch.depth, arch.group_w), Candidate(arch, **cx)
        if shape not in found or key(candidate) < key(found[shape]):
            found[shape] = candidate

    for i in range(max_shapes):
        if i >= MIN_SHAPES and len(found) >= max(2 * top, 10):
            break
        depth = int(rng.integers(REFINED_REGNET.depth[0], REFINED_REGNET.depth[1] + 1))
        w0 = int(log_uniform(rng, *REFINED_REGNET.w0))
        wm = float(log_uniform(rng, *REFINED_REGNET.wm))
        group_w = draw_group_width(rng, REFINED_REGNET.group_widths)
        lo, hi = _wa_range(depth, w0, wm)
        if lo <= hi:
            _bisect_wa(evaluate, lambda k: ArchSpec(w0, k / 100, wm, depth, group_w,
                                                    se_ratio=se_ratio), lo, hi, target, visit)
        if on_progress is not None:
            on_progress(i + 1, max_shapes)
    if not found:
        raise ValueError(_no_fit_message(target, family, measure, near))
    ranked, designs = [], set()
    for c in sorted(found.values(), key=key):
        d = c.arch.design()
        if (d.widths, d.depths, d.group_widths) not in designs:
            designs.add((d.widths, d.depths, d.group_widths))
            ranked.append(c)
    return ranked[:top]


def reachable_flops(family: str, measure: Measure) -> Tuple[int, int]:
    """About the fewest and most flops of 4-stage nets of the refined space.

    Evaluates a fixed grid over the space's corners (depth, w0, wm, group
    width at their bounds and middles, wa on a log grid).

    Returns:
        ``(low, high)`` flops under ``measure``.
    """
    r, flops = REFINED_REGNET, []
    se_ratio = SE_RATIO if family == 'y' else None
    for depth in r.depth:
        for w0 in (r.w0[0], 2 * r.w0[0], 64, r.w0[1]):
            for wm in (r.wm[0], 2.5, r.wm[1]):
                for group_w in (r.group_widths[0], r.group_widths[-1]):
                    for wa in np.geomspace(r.wa[0], r.wa[1], 9).round(2):
                        arch = ArchSpec(w0, float(wa), wm, depth, group_w, se_ratio=se_ratio)
                        if regnet_stage_count_ok(arch):
                            flops.append(measure(arch)['flops'])
    return min(flops), max(flops)


def _no_fit_message(target: Target, family: str, measure: Measure,
                    near: List[Candidate]) -> str:
    want = f'{format_size(target.flops)} flops (+-{target.tolerance:.0%}) at {measure.describe()}'
    if near:
        caps = ', '.join(f'{k} <= {format_size(v)}' for k, v in
                         (('params', target.params_max), ('acts', target.acts_max)) if v)
        fewest = min(near, key=lambda c: (c.params, c.acts))
        return (f'no RegNet{family.upper()} of {want} has {caps}; the smallest found has '
                f'{format_size(fewest.params)} params and {format_size(fewest.acts)} acts')
    low, high = reachable_flops(family, measure)
    r = REFINED_REGNET
    space = (f'the refined space ({r.depth[0]} <= depth <= {r.depth[1]}, {r.wm[0]:g} <= wm <= '
             f'{r.wm[1]:g}, w0 <= {r.w0[1]}, wa <= {r.wa[1]:g}) reaches about '
             f'{format_size(low)} to {format_size(high)} flops there')
    if low <= target.flops <= high:
        return (f'the search found no RegNet{family.upper()} of {want}, though {space}; '
                'try another --seed, more --shapes or a larger --tolerance')
    return f'no RegNet{family.upper()} has {want}: {space}'
