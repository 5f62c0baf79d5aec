"""Sizes in and out (``1.2G``), text tables, and records as table, JSON or CSV.

Example:
    >>> parse_size('1.2G'), parse_size('400MF'), parse_size('3.5e9')
    (1200000000, 400000000, 3500000000)
    >>> format_size(397678568)
    '397.7M'
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
from typing import Any, Dict, List, Mapping, Sequence

from ..arch import ArchLike, arch_name, get_arch

_UNITS = {'': 1, 'k': 10 ** 3, 'm': 10 ** 6, 'g': 10 ** 9, 't': 10 ** 12}
_SIZE = re.compile(r'\s*(\d+(?:\.\d*)?|\.\d+)(e[+-]?\d+)?\s*([kmgt]?)(?:f|flops)?\s*$',
                   re.IGNORECASE)
#: The output formats of ``list`` and ``fit``.
FORMATS = ('table', 'json', 'csv')


def parse_size(text: str) -> int:
    """Parses a count such as ``1.2G``, ``400M``, ``400MF``, ``10k`` or ``3.5e9``.

    Args:
        text: A positive number with an optional ``k``/``M``/``G``/``T`` suffix
            (any case; a trailing ``F`` or ``FLOPs`` is allowed).

    Returns:
        The count, rounded to an integer.

    Raises:
        ValueError: Not such a number, or not > 0.
    """
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f'expected a size like 1.2G, 400M, 10k or 3.5e9, got {text!r}')
    number, exponent, unit = match.groups()
    value = float(number + (exponent or '')) * _UNITS[unit.lower()]
    if not (math.isfinite(value) and value >= 1):
        raise ValueError(f'a size must be at least 1, got {text!r}')
    return int(round(value))


def format_size(value: float) -> str:
    """Formats a count with 4 significant digits and a k/M/G/T suffix (``'397.7M'``)."""
    for unit, scale in (('T', 1e12), ('G', 1e9), ('M', 1e6), ('k', 1e3)):
        if abs(value) >= scale:
            return f'{value / scale:.4g}{unit}'
    return f'{value:.4g}'


def arch_text(arch: ArchLike) -> str:
    """An arch as config text: a preset's quoted name, else ``dict(w0=..., ...)``."""
    name = arch_name(arch)
    if name is not None:
        return repr(name)
    fields = get_arch(arch).to_dict()
    return 'dict(' + ', '.join(f'{k}={v!r}' for k, v in fields.items()) + ')'


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned text columns separated by two spaces, with a rule under the header."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ['  '.join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, '  '.join('-' * w for w in widths))
    return '\n'.join(lines) + '\n'


def _cell(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ','.join(map(str, value))
    return str(value)


def format_records(records: List[Dict[str, Any]], fmt: str,
                   table_columns: Mapping[str, str]) -> str:
    """Renders records (dicts with the same keys) as a table, JSON or CSV.

    Args:
        records: The rows; JSON and CSV keep every key and exact numbers.
        fmt: One of :data:`FORMATS`.
        table_columns: For the table: header -> key; ``params``, ``flops`` and
            ``acts`` are shown as sizes (``397.7M``).

    Returns:
        The text, ending with a newline.
    """
    if fmt == 'json':
        # One record per line: valid JSON that stays readable and greppable.
        return '[\n' + ',\n'.join('  ' + json.dumps(r) for r in records) + '\n]\n'
    if fmt == 'csv':
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(records[0]) if records else [],
                                lineterminator='\n')
        writer.writeheader()
        for record in records:
            writer.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v
                             for k, v in record.items()})
        return out.getvalue()
    if fmt != 'table':
        raise ValueError(f'unknown format {fmt!r}; expected one of: ' + ', '.join(FORMATS))
    sized = {'params', 'flops', 'acts'}
    rows = [[format_size(r[k]) if k in sized else r[k] for k in table_columns.values()]
            for r in records]
    return format_table(list(table_columns), rows)
