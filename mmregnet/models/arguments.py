"""Checks of the RegNet backbone's arguments, made before anything is allocated.

Each check raises :class:`~mmregnet.errors.InputError` (a ``ValueError``)
naming the argument, the rule and the value. Booleans are refused wherever an
integer is meant (``True`` would otherwise pass as 1), and sizes are bounded
so that a typo fails at once instead of exhausting the machine's memory.
"""
from typing import Any, Sequence, Tuple

from ..arch import MAX_STRIDE, MAX_WIDTH, ArchSpec
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
