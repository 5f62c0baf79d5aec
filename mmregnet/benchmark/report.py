"""Tables and files of benchmark results: markdown for the README, JSON for the record."""
import json
import math
import os
import platform
from importlib.metadata import version
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from ..fileio import atomic_output


def _version(package: str) -> Any:
    """A package's version, or None where it is not installed."""
    try:
        return version(package)
    except Exception:  # PackageNotFoundError, or a broken install
        return None


def machine_info() -> Dict[str, Any]:
    """The machine the figures were measured on: CPU model, cores, threads, versions, GPU."""
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next((line.split(':', 1)[1].strip() for line in f
                        if line.startswith('model name')), cpu)
    except OSError:
        pass
    info = dict(cpu=cpu, cores=os.cpu_count(), torch_threads=torch.get_num_threads(),
                torch=torch.__version__, python=platform.python_version(),
                mkldnn=torch.backends.mkldnn.is_available(), onnxruntime=_version('onnxruntime'))
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
            err=_error_text(s.get('rel_error')),
            peak=f'{peak / 2**20:.0f} MiB' if peak is not None else None))
    return rows


STATS_COLUMNS = (('name', 'model'), ('median', 'median ms'), ('p90', 'p90 ms'),
                 ('p99', 'p99 ms'), ('min', 'min ms'), ('fps', 'items/s'),
                 ('speedup', 'vs reference'), ('mac', 'MAC/s of matmul'),
                 ('err', 'rel. error'), ('peak', 'peak mem'))


def write_json(path: str, data: Any) -> None:
    """Writes ``data`` as indented JSON, atomically (a complete file or none; replaces one).

    Args:
        path: Destination; its folder must exist.
        data: JSON-able data.
    """
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + '\n')


def write_text(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` atomically (:func:`mmregnet.fileio.atomic_output`)."""
    with atomic_output(path, force=True) as tmp:
        with open(tmp, 'w') as f:
            f.write(text)


STAGE_COLUMNS = (('stage', 'stage'), ('reference', 'reference ms'),
                 ('onnxruntime', 'ONNX Runtime ms'), ('speedup', 'speed-up'))


def stage_rows(stages: Dict[str, Dict[str, float]],
               nms: Optional[Dict[str, float]] = None) -> List[Dict[str, Any]]:
    """Rows of the per-stage split (stage to median ms per contender), with a total.

    ``nms``, NMS timed alone (part of decode+NMS), comes after the total.
    """
    def row(stage: str, ms: Dict[str, float]) -> Dict[str, Any]:
        return dict(stage=stage, reference=f"{ms['reference']:.1f}",
                    onnxruntime=f"{ms['onnxruntime']:.1f}",
                    speedup=f"{ms['reference'] / ms['onnxruntime']:.2f}x")
    rows = [row(stage, ms) for stage, ms in stages.items()]
    rows.append(row('sum of stages', {k: sum(ms[k] for ms in stages.values())
                                      for k in ('reference', 'onnxruntime')}))
    if nms:
        rows.append(row('NMS alone (in decode+NMS)', nms))
    return rows


def detector_markdown(result: Dict[str, Any]) -> str:
    """The tables of one :func:`~mmregnet.benchmark.detector_race.run_detector` result."""
    name = os.path.basename(result['config']).replace('.py', '')
    head = (f"{name}: {result['num_points']} points, {result['pillars']} pillars, "
            f"{result['boxes_to_nms']} boxes to NMS, {result['threads']} threads")
    parts = [f'### {head}: points to boxes\n\n' + markdown_table(
        stats_rows(_without_matmul(result['detector'])), STATS_COLUMNS)]
    cold = result.get('cold_start')
    if cold:
        parts.append(f"Cold start of the ONNX Runtime detector in a fresh process (median of "
                     f"{cold['runs']}): {cold['total_s']:.2f} s = import {cold['import_s']:.2f} s"
                     f" + session {cold['open_s']:.2f} s + first frame "
                     f"{cold['first_frame_s']:.2f} s; torch "
                     f"{'loaded' if cold['loads_torch'] else 'not loaded'}.\n")
    parts.append(f'### {name}: stages, median ms\n\n'
                 + markdown_table(stage_rows(result['stages'], result.get('nms')),
                                  STAGE_COLUMNS))
    bb = result['backbone']
    parts.append(f"### {name}: backbone alone, {bb['arch']} on "
                 f"{'x'.join(map(str, bb['input_shape']))}\n\n" + markdown_table(
                     stats_rows(_without_matmul(result['backbone_only'])), STATS_COLUMNS))
    return '\n'.join(parts)


def _without_matmul(stats: Dict[str, Dict]) -> Dict[str, Dict]:
    return {k: v for k, v in stats.items() if k != '(matmul)'}


def _error_text(error: Optional[float]) -> Optional[str]:
    """A contender's largest relative error, or why there is none to give."""
    if error is None:
        return None
    return f'{error:.1e}' if math.isfinite(error) else 'other boxes'
