"""Naming the arch that observed shapes describe: a preset, or an arch dict that reproduces them.

mmregnet builds a RegNet from ``(w0, wa, wm, depth, group_w, bot_mul,
se_ratio)`` alone (:meth:`mmregnet.arch.ArchSpec.design`), so weights whose
stage widths come from another rounding rule (torchvision's X-400MF, X-4.0GF,
Y-800MF, Y-4.0GF, Y-8.0GF) need parameters that make pycls's rule land on
those widths. The search below inverts the rule: stage ``k`` is
``round(w0 * wm**k / 8) * 8`` before the group-width adjustment, which bounds
``wm``; block ``j`` is in stage ``k`` when ``w0 * wm**(k - 1/2) <= w0 + wa * j
< w0 * wm**(k + 1/2)``, which bounds ``wa``. Every candidate is checked by
building its design, so a found dict reproduces the weights exactly.
"""
import math
from dataclasses import dataclass, replace
from typing import Iterator, List, Optional, Sequence, Tuple

from ..arch import (PRESETS, WIDTH_QUANTUM, ArchLike, ArchSpec, adjust_widths_and_groups,
                    arch_name, get_arch)
from .errors import ConversionError
from .shapes import ObservedArch

_MAX_LEAVES = 20000  # bounds the search on pathological widths; real ones need a handful
_SINGLE_STAGE_WM = (1.0 + 1e-9, 3.0)


@dataclass(frozen=True)
class ArchMatch:
    """An arch that reproduces observed weights.

    Attributes:
        spec: The arch.
        name: Its preset name, or None for an arch dict.
    """

    spec: ArchSpec
    name: Optional[str]

    def config_value(self) -> object:
        """What to write as ``arch=`` in a config: the preset name or the dict."""
        return self.name if self.name else self.spec.to_dict()


def design_matches(spec: ArchSpec, observed: ObservedArch) -> bool:
    """Checks an arch against observed weights.

    Args:
        spec: A candidate arch.
        observed: The weights' structure.

    Returns:
        Whether ``spec`` builds exactly the observed widths, depths, group
        widths, bottleneck widths and SE widths.
    """
    d = spec.design()
    if (d.widths, d.depths, d.group_widths, d.bottleneck_widths) != (
            observed.widths, observed.depths, observed.group_widths, observed.bottleneck_widths):
        return False
    if not observed.se_widths:
        return spec.se_ratio is None
    return spec.se_ratio is not None and all(
        int(round(cin * spec.se_ratio)) == se for cin, se in observed.se_widths)


def infer_se_ratio(observed: ObservedArch) -> Optional[float]:
    """Finds the SE ratio that gives every block's SE width (0.25 in every published RegNetY).

    Args:
        observed: The weights' structure.

    Returns:
        The ratio, or None for weights without SE.

    Raises:
        ConversionError: No single ratio gives all SE widths.
    """
    if not observed.se_widths:
        return None
    lo = max((se - 0.5) / cin for cin, se in observed.se_widths)
    hi = min((se + 0.5) / cin for cin, se in observed.se_widths)
    for ratio in (0.25, _short_decimal_inside(lo, hi)):
        if ratio is not None and 0 < ratio <= 1 and all(
                int(round(cin * ratio)) == se for cin, se in observed.se_widths):
            return ratio
    raise ConversionError(f'no single SE ratio gives the SE widths {observed.se_widths} '
                          '(block input channels, SE channels)')


def _short_decimal_inside(lo: float, hi: float) -> Optional[float]:
    # The shortest decimal strictly inside (lo, hi) near its middle, for readable configs.
    if not lo < hi:
        return None
    for decimals in (2, 3, 4, 6, 9):
        value = round((lo + hi) / 2, decimals)
        if lo < value < hi:
            return value
    return None


def _pre_adjust_candidates(width: int, group_width: int, bot_mul: float,
                           group_w: int) -> List[int]:
    # Multiples of 8 that pycls's group-width adjustment turns into `width`, nearest first.
    span = range(WIDTH_QUANTUM, width + 2 * group_width + WIDTH_QUANTUM, WIDTH_QUANTUM)
    ok = [p for p in span
          if adjust_widths_and_groups([p], bot_mul, group_w) == ([width], [group_width])]
    return sorted(ok, key=lambda p: abs(p - width))


def _wm_interval(w0: int, pre: int, k: int) -> Tuple[float, float]:
    q = WIDTH_QUANTUM / 2
    return ((pre - q) / w0) ** (1 / k), ((pre + q) / w0) ** (1 / k)


def _stage_width_choices(cands: Sequence[Sequence[int]]) -> Iterator[Tuple[int, float, float]]:
    """Yields (w0, wm_lo, wm_hi) for every choice of pre-adjust stage widths that fits one wm."""
    leaves = 0

    def walk(k: int, w0: int, prev: int, lo: float,
             hi: float) -> Iterator[Tuple[int, float, float]]:
        nonlocal leaves
        if k == len(cands):
            leaves += 1
            yield w0, lo, hi
            return
        for pre in cands[k]:
            if pre <= prev or leaves >= _MAX_LEAVES:
                continue
            a, b = _wm_interval(w0, pre, k)
            if max(lo, a) < min(hi, b):
                yield from walk(k + 1, w0, pre, max(lo, a), min(hi, b))

    for w0 in cands[0]:
        lo, hi = _SINGLE_STAGE_WM if len(cands) == 1 else (1.0, math.inf)
        yield from walk(1, w0, w0, lo, hi)


def _wa_interval(w0: int, wm: float, depths: Sequence[int]) -> Tuple[float, float]:
    lo, hi, start = 0.0, math.inf, 0
    for k, depth in enumerate(depths):
        end = start + depth - 1
        if k > 0:
            lo = max(lo, w0 * (wm ** (k - 0.5) - 1) / start)
        if end > 0:
            hi = min(hi, w0 * (wm ** (k + 0.5) - 1) / end)
        start += depth
    return lo, hi


def _rates(w0: int, lo: float, hi: float, depths: Sequence[int]) -> Iterator[Tuple[float, float]]:
    """Yields (wm, wa) pairs inside the wm interval whose wa interval is not empty."""
    mid = (lo + hi) / 2
    for decimals in (2, 3, 4, 6):
        step = 10.0 ** -decimals
        first, last = math.floor(lo / step) + 1, math.ceil(hi / step) - 1
        grid = sorted(range(first, last + 1), key=lambda i: abs(i * step - mid))[:50]
        for i in grid:
            wm = round(i * step, decimals)
            a, b = _wa_interval(w0, wm, depths)
            wa = 0.0 if b == math.inf and a == 0 else _short_decimal_inside(a, b)
            if wa is not None and lo < wm < hi:
                yield wm, wa


def fit_arch(observed: ObservedArch) -> ArchSpec:
    """Finds an arch whose :meth:`~mmregnet.arch.ArchSpec.design` equals the observed structure.

    Args:
        observed: The shapes read by :func:`~mmregnet.checkpoint.shapes.read_arch`.

    Returns:
        The arch (short decimals where the constraints allow).

    Raises:
        ConversionError: No ``(w0, wa, wm)`` of the quantized linear rule gives these widths.
    """
    bot_mul = observed.bottleneck_widths[0] / observed.widths[0]
    group_w = max(observed.group_widths)
    se_ratio = infer_se_ratio(observed)
    cands = [_pre_adjust_candidates(w, g, bot_mul, group_w)
             for w, g in zip(observed.widths, observed.group_widths)]
    for w0, lo, hi in _stage_width_choices(cands):
        for wm, wa in _rates(w0, lo, hi, observed.depths):
            spec = ArchSpec(w0=w0, wa=wa, wm=wm, depth=sum(observed.depths), group_w=group_w,
                            bot_mul=bot_mul, se_ratio=se_ratio)
            if design_matches(spec, observed):
                return spec
    raise ConversionError(f'no RegNet arch (w0, wa, wm, depth, group_w) reproduces '
                          f'{observed.describe()}')


def match_preset(observed: ObservedArch) -> Optional[str]:
    """Looks the observed structure up among the presets.

    Args:
        observed: The weights' structure.

    Returns:
        The first preset that builds it exactly, or None.
    """
    return next((name for name, spec in PRESETS.items() if design_matches(spec, observed)), None)


def resolve_arch(observed: ObservedArch, requested: Optional[ArchLike] = None) -> ArchMatch:
    """Names the arch of observed weights, checking a requested one if given.

    Args:
        observed: The weights' structure.
        requested: A preset name or arch dict the weights must fit, or None to infer.

    Returns:
        The preset if one matches, else a fitted arch dict.

    Raises:
        ConversionError: The weights do not fit ``requested``, or nothing fits.
    """
    if requested is not None:
        try:
            spec = get_arch(requested)
        except (ValueError, TypeError) as e:
            raise ConversionError(str(e)) from None
        if not design_matches(spec, observed):
            d = spec.design()
            label = requested if isinstance(requested, str) else 'the given arch'
            se = 'with SE' if spec.se_ratio else 'no SE'
            raise ConversionError(
                f'the weights do not fit {label}: they have {observed.describe()}; {label} has '
                f'widths {d.widths}, depths {d.depths}, group widths {d.group_widths}, {se} '
                '(leave the arch out to infer a matching one)')
        return ArchMatch(spec, arch_name(spec))
    name = match_preset(observed)
    if name is not None:
        return ArchMatch(PRESETS[name], name)
    for spec in PRESETS.values():  # torchvision's models: a preset's numbers, its rounding
        rounded = replace(spec, width_rounding='torchvision')
        if design_matches(rounded, observed):
            return ArchMatch(rounded, None)
    return ArchMatch(fit_arch(observed), None)
