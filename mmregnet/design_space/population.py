"""Populations: seeded samples of a design space, as CSV a user can add columns to.

The paper compares design spaces by the EDF of ``n`` nets drawn from each,
restricted to one complexity regime (§3.1: n = 500, 360MF to 400MF). Each row
holds one net: its stages, its RegNet parameters if it has them, and its
complexity. Users append columns (``error`` from their own runs) and plot them.

Example:
    >>> rows = sample_population('regnetx-refined', n=3, seed=0)
    >>> [r['index'] for r in rows], rows[0]['space']
    ([0, 1, 2], 'regnetx-refined')
"""
from __future__ import annotations

import csv
import json
import math
from typing import Any, Callable, Dict, IO, List, Optional, Tuple

import numpy as np

from ..checks import check_int
from .formatting import format_size
from .measure import Measure
from .space import SPACES, Net

#: The CSV columns of a population, in order.
COLUMNS = ('index', 'space', 'params', 'flops', 'acts', 'depths', 'widths', 'bot_muls',
           'group_widths', 'se_ratio', 'depth', 'w0', 'wa', 'wm', 'group_w', 'bot_mul')
#: Draws allowed per requested net before a complexity range counts as unreachable.
MAX_DRAWS_PER_NET = 400
#: Draws allowed before giving up when not a single net has been accepted.
MAX_DRAWS_NONE_FOUND = 4000
#: Most nets of a population (the paper draws 500; 100k take minutes, not hours).
MAX_NETS = 100_000

Progress = Callable[[int, int], None]


def net_row(index: int, space: str, net: Net, cx: Dict[str, int]) -> Dict[str, Any]:
    """One CSV row (a dict keyed by :data:`COLUMNS`) for a net and its complexity."""
    row: Dict[str, Any] = dict(index=index, space=space, **cx)
    for key in ('depths', 'widths', 'bot_muls', 'group_widths'):
        row[key] = list(getattr(net, key))
    row['se_ratio'] = net.se_ratio
    arch = net.arch.to_dict() if net.arch is not None else {}
    for key in ('depth', 'w0', 'wa', 'wm', 'group_w', 'bot_mul'):
        row[key] = arch.get(key)
    return row


def sample_population(space: str, n: int, seed: int,
                      flops_range: Optional[Tuple[float, float]] = None,
                      measure: Measure = Measure(),
                      on_progress: Optional[Progress] = None) -> List[Dict[str, Any]]:
    """Draws ``n`` nets from a space, as the paper does; the same seed gives the same rows.

    Draws that the space rejects, or whose flops fall outside ``flops_range``, are
    drawn again (rejection sampling), so the first ``k`` rows of ``n > k`` equal
    the rows of ``k``.

    Args:
        space: A name from :data:`~.space.SPACES`.
        n: Number of nets (1 to :data:`MAX_NETS`).
        seed: Seed of the random generator.
        flops_range: ``(low, high)`` flops to keep, inclusive, or None for all.
        measure: How flops are counted (default: pycls's 224x224 ImageNet count).
        on_progress: Called as ``on_progress(accepted, draws)`` after each draw.

    Returns:
        ``n`` row dicts keyed by :data:`COLUMNS`.

    Raises:
        ValueError: An unknown space, ``n < 1``, a bad range, or a range that
            the draws do not reach (the message gives the flops they spanned).
    """
    if space not in SPACES:
        raise ValueError(f'unknown design space {space!r}; expected one of: '
                         + ', '.join(SPACES))
    check_int('the number of nets (--n)', n, 1, MAX_NETS,
              f'a positive integer, at most {MAX_NETS}')
    if flops_range is not None and not 0 <= flops_range[0] <= flops_range[1]:
        raise ValueError(f'the flops range must be LOW <= HIGH, both >= 0, got {flops_range}')
    rng = np.random.default_rng(seed)
    rows: List[Dict[str, Any]] = []
    draws, seen = 0, [float('inf'), 0.0]
    while len(rows) < n:
        limit = max(MAX_DRAWS_NONE_FOUND, MAX_DRAWS_PER_NET * n if rows else 0)
        if draws >= limit:
            low, high = (format_size(v) for v in flops_range)  # type: ignore[union-attr]
            raise ValueError(
                f'only {len(rows)} of {n} nets of {space} have flops in [{low}, {high}] after '
                f'{draws} draws; the drawn nets spanned {format_size(seen[0])} to '
                f'{format_size(seen[1])} flops ({measure.describe()})')
        draws += 1
        net = SPACES[space].draw(rng)
        if net is not None:
            cx = measure.of_net(net)
            seen = [min(seen[0], cx['flops']), max(seen[1], cx['flops'])]
            if flops_range is None or flops_range[0] <= cx['flops'] <= flops_range[1]:
                rows.append(net_row(len(rows), space, net, cx))
        if on_progress is not None:
            on_progress(len(rows), draws)
    return rows


def write_population(rows: List[Dict[str, Any]], stream: IO[str]) -> None:
    """Writes rows as CSV with a header; lists are written as JSON, None as empty."""
    writer = csv.DictWriter(stream, fieldnames=list(COLUMNS), lineterminator='\n')
    writer.writeheader()
    for row in rows:
        writer.writerow({k: '' if v is None else json.dumps(v) if isinstance(v, list) else v
                         for k, v in row.items()})


def read_column(path: str, column: str) -> np.ndarray:
    """Reads one numeric column of a population CSV, skipping empty cells.

    Args:
        path: The CSV file (a header row, then one row per net).
        column: The column's header, e.g. ``flops`` or a user's ``error``.

    Returns:
        The column's values, float64, in file order.

    Raises:
        ValueError: A file that is not UTF-8 CSV text, a missing column (the
            message lists the columns), a cell that is not a finite number
            (with its line), or no value at all.
    """
    try:
        with open(path, newline='', encoding='utf-8') as f:
            values = _read_cells(path, csv.DictReader(f), column)
    except UnicodeDecodeError as e:
        raise ValueError(f'{path} is not a CSV text file (byte {e.object[e.start]:#04x} at '
                         f'offset {e.start} is not UTF-8)') from None
    except csv.Error as e:
        raise ValueError(f'{path} is not a CSV text file ({e})') from None
    if not values:
        raise ValueError(f'{path}: column {column!r} has no values')
    return np.asarray(values, dtype=np.float64)


def _read_cells(path: str, reader: csv.DictReader, column: str) -> List[float]:
    if reader.fieldnames is None or column not in reader.fieldnames:
        raise ValueError(f'{path} has no column {column!r}; its columns are: '
                         + ', '.join(reader.fieldnames or ['none (empty file)']))
    values = []
    for row in reader:
        cell = (row.get(column) or '').strip()
        if not cell:
            continue
        try:
            value = float(cell)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value):
            raise ValueError(f'{path}, line {reader.line_num}: column {column!r} must be a '
                             f'finite number, got {cell!r}')
        values.append(value)
    return values
