"""The paper's two kinds of figure: the width rule of one RegNet, and EDFs of populations.

Drawn with matplotlib's object API on the Agg canvas, so no global backend or
pyplot state is touched.

Example:
    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     plot_widths('regnetx_400mf', os.path.join(folder, 'w.png'))
    ...     print(open(os.path.join(folder, 'w.png'), 'rb').read(4))
    b'\\x89PNG'
"""
from __future__ import annotations

from typing import Mapping, Optional

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..arch import ArchLike, arch_name, get_arch
from .formatting import format_size

#: File types ``plot`` can write, by extension.
PLOT_FORMATS = ('png', 'pdf', 'svg')
#: Columns drawn on a log axis: complexity spans decades.
LOG_COLUMNS = ('params', 'flops', 'acts')


def _figure() -> Figure:
    fig = Figure(figsize=(6.4, 4.2), dpi=100, layout='constrained')
    FigureCanvasAgg(fig)
    return fig


def plot_format(path: str) -> str:
    """The file type of a plot path, from its extension.

    Raises:
        ValueError: An extension not in :data:`PLOT_FORMATS`.
    """
    fmt = path.rsplit('.', 1)[-1].lower() if '.' in path else ''
    if fmt not in PLOT_FORMATS:
        raise ValueError(f'a plot file must end in one of .{", .".join(PLOT_FORMATS)}, '
                         f'got {path!r}')
    return fmt


def _save(fig: Figure, path: str, fmt: Optional[str]) -> None:
    fig.savefig(path, format=fmt or plot_format(path))


def plot_widths(arch: ArchLike, path: str, fmt: Optional[str] = None) -> None:
    """Draws per-block widths: the quantized rule against the continuous linear one.

    The paper's figure of the RegNet parametrization: ``u_j = w0 + wa * j``
    as a dashed line, the quantized widths as steps, stage boundaries as
    vertical lines, on a log-2 width axis.

    Args:
        arch: A preset name, an arch dict or an ArchSpec.
        path: Where to write the figure (``.png``, ``.pdf`` or ``.svg``).
        fmt: The file type, when ``path`` does not end in it (a temporary file).
    """
    spec = get_arch(arch)
    d = spec.design()
    j = np.arange(len(d.block_widths))
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(j, d.block_widths_cont, '--', color='tab:gray',
            label=r'continuous $u_j = w_0 + w_a \cdot j$')
    ax.step(j, d.block_widths, where='mid', color='tab:blue', linewidth=2,
            label=r'quantized $w_j$ (stage width x blocks)')
    for i, end in enumerate(np.cumsum(d.depths)):
        start = end - d.depths[i]
        if start:
            ax.axvline(start - 0.5, color='tab:red', linestyle=':', linewidth=1)
        ax.annotate(f'{d.widths[i]}x{d.depths[i]}', ((start + end - 1) / 2, d.block_widths[start]),
                    textcoords='offset points', xytext=(0, 6), ha='center', fontsize=8)
    ax.set_yscale('log', base=2)
    ax.set_xlabel('block index j')
    ax.set_ylabel('width (channels)')
    ax.set_title(f'{arch_name(spec) or "custom RegNet"}: w0={spec.w0}, wa={spec.wa}, '
                 f'wm={spec.wm}, depth={spec.depth}', fontsize=10)
    ax.legend(loc='upper left', fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, path, fmt)


def plot_edfs(populations: Mapping[str, np.ndarray], column: str, path: str,
              fmt: Optional[str] = None) -> None:
    """Overlays empirical distribution functions, one per population.

    ``F(x)`` is the fraction of a population's values below ``x`` (paper §3,
    eq. 1, there for errors). The legend gives each population's size, minimum
    and mean, as the paper's figures do.

    Args:
        populations: Label -> 1-D values (at least one value each).
        column: The column plotted, for the axis label (a log axis for
            ``params``, ``flops`` and ``acts``).
        path: Where to write the figure (``.png``, ``.pdf`` or ``.svg``).
        fmt: The file type, when ``path`` does not end in it (a temporary file).
    """
    fig = _figure()
    ax = fig.add_subplot()
    show = format_size if column in LOG_COLUMNS else (lambda v: f'{v:.4g}')
    for label, values in populations.items():
        x = np.sort(np.asarray(values, dtype=np.float64))
        cdf = np.arange(len(x) + 1) / len(x)
        ax.step(np.concatenate([x[:1], x]), cdf, where='post', linewidth=1.5,
                label=f'{label} (n={len(x)}, min {show(x[0])}, mean {show(x.mean())})')
    if column in LOG_COLUMNS:
        ax.set_xscale('log')
    ax.set_xlabel(column)
    ax.set_ylabel('cumulative prob.')
    ax.set_ylim(0, 1)
    ax.set_title(f'EDF of {column}', fontsize=10)
    ax.legend(loc='lower right', fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, path, fmt)
