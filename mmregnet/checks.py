"""Checks of a user's values, each raising :class:`~mmregnet.errors.InputError`
with the value's name, the rule and the value.

Booleans are refused wherever an integer is meant (``True`` would otherwise
pass as 1), and NaN or infinity wherever a number is.

Example:
    >>> check_int('--n', 500, 1, 100000)
    500
    >>> check_int('--n', True, 1, 100000)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    mmregnet.errors.InputError: --n must be an integer in 1..100000, got True (booleans ...)
"""
import math
import numbers
from typing import Any, Optional

from .errors import InputError


def is_int(value: Any) -> bool:
    """Whether ``value`` is an integer (Python's or numpy's), and not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def shown(value: Any) -> str:
    """``repr(value)``, saying so when a bool stands where an integer is meant."""
    if isinstance(value, bool) or (isinstance(value, (tuple, list))
                                   and any(isinstance(v, bool) for v in value)):
        return f'{value!r} (booleans are not integers)'
    return repr(value)


def check_int(name: str, value: Any, low: int, high: int, rule: Optional[str] = None) -> int:
    """``value`` as an int if it is an integer in ``low..high``.

    Args:
        name: The value's name, for the message.
        value: The value given.
        low: Smallest allowed value.
        high: Largest allowed value.
        rule: The rule in words (default: ``an integer in LOW..HIGH``).

    Raises:
        InputError: Not an integer (a bool included) or out of range.
    """
    if not (is_int(value) and low <= value <= high):
        raise InputError(f'{name} must be {rule or f"an integer in {low}..{high}"}, '
                         f'got {shown(value)}')
    return int(value)


def check_real(name: str, value: Any, low: float, high: float, low_open: bool = False) -> float:
    """``value`` as a float if it is a finite number in ``[low, high]`` (``(low, high]``).

    Raises:
        InputError: Not a number, NaN, infinite, or out of range.
    """
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and math.isfinite(value) and (low < value if low_open else low <= value)
          and value <= high)
    if not ok:
        bracket = '(' if low_open else '['
        raise InputError(f'{name} must be a finite number in {bracket}{low:g}, {high:g}], '
                         f'got {shown(value)}')
    return float(value)


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is ``True`` or ``False``.

    Raises:
        InputError: Anything else (``'no'`` and ``0`` included: a truthy
            string would silently mean True).
    """
    if not isinstance(value, bool):
        raise InputError(f'{name} must be True or False, got {value!r}')
    return value
