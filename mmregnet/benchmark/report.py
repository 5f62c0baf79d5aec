"""Tables and files of benchmark results: markdown for the README, JSON for the record."""
import json
import os
import platform
import tempfile
from typing import Any, Dict, List, Sequence, Tuple

import torch

from ..models import onednn


def machine_info() -> Dict[str, Any]:
    """The machine the figures were measured on: CPU model, cores, threads, versions, GPU."""
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next((line.split(':', 1)[1].strip() for line in f
                        if line.startswith('model name')), cpu)
    except OSError:
        pass
    lib = onednn.library()
    info = dict(cpu=cpu, cores=os.cpu_count(), torch_threads=torch.get_num_threads(),
                torch=torch.__version__, python=platform.python_version(),
                mkldnn=torch.backends.mkldnn.is_available(),
                # the deployed model's CPU backend: oneDNN called directly, or PyTorch's op
                onednn=lib.path if lib is not None else None)
    if torch.cuda.is_available():
        info['gpu'] = torch.cuda.get_device_name()
    return info


def markdown_table(rows: Sequence[Dict[str, Any]], columns: Sequence[Tuple[str, str]]) -> str:
    """A GitHub-markdown table.

    Args:
        rows: One dict per row.
        columns: ``(key, header)`` pairs; a missing or None value prints as ``-``.

    Returns:
        The table, one line per row, ending in a newline.
    """
    lines = ['| ' + ' | '.join(h for _, h in columns) + ' |',
             '|' + '|'.join(' --- ' for _ in columns) + '|']
    for row in rows:
        cells = [row.get(k) for k, _ in columns]
        lines.append('| ' + ' | '.join('-' if c is None else str(c) for c in cells) + ' |')
    return '\n'.join(lines) + '\n'


def stats_rows(stats: Dict[str, Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Rows of one race (contender name to statistics) with rounded, human units."""
    rows = []
    for name, s in stats.items():
        peak = s.get('peak_bytes')
        rows.append(dict(
            name=name, median=f"{s['median_ms']:.1f}", p90=f"{s['p90_ms']:.1f}",
            p99=f"{s['p99_ms']:.1f}", min=f"{s['min_ms']:.1f}",
            fps=f"{s['fps']:.2f}" if 'fps' in s else None,
            speedup=f"{s['speedup']:.2f}x" if 'speedup' in s else None,
            mac=f"{100 * s['mac_fraction']:.0f}%" if 'mac_fraction' in s else None,
            err=f"{s['rel_error']:.1e}" if s.get('rel_error') is not None else None,
            peak=f'{peak / 2**20:.0f} MiB' if peak is not None else None))
    return rows


STATS_COLUMNS = (('name', 'model'), ('median', 'median ms'), ('p90', 'p90 ms'),
                 ('p99', 'p99 ms'), ('min', 'min ms'), ('fps', 'items/s'),
                 ('speedup', 'vs reference'), ('mac', 'MAC/s of matmul'),
                 ('err', 'rel. error'), ('peak', 'peak mem'))


def write_json(path: str, data: Any) -> None:
    """Writes ``data`` as indented JSON, atomically (a complete file or none).

    Args:
        path: Destination; its folder must exist.
        data: JSON-able data.
    """
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f'the folder of the output {path!r} does not exist')
    fd, tmp = tempfile.mkstemp(suffix='.json', dir=folder)
    try:
        with os.fdopen(fd, 'w') as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.write('\n')
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
