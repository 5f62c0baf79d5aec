"""Generates the table of configs/classification/README.md from the configs.

One row per RegNet preset's ImageNet config: params and FLOPs (multiply-adds,
224x224 input, with the 1000-class head) from mmregnet's analytic complexity,
and the top-1/top-5 accuracy that mmpretrain published for the configs it
ships, read from the metafile its wheel installs. Those results are
mmpretrain's (trained with its own RegNet), not ours.

Usage:
    python tools/misc/classification_index.py           # rewrite the table
    python tools/misc/classification_index.py --check   # exit 1 if it is stale
"""
import argparse
import glob
import os
import re
import sys
from typing import Callable, Dict, List, Optional

from mmregnet.warning_filters import hide_third_party_warnings

hide_third_party_warnings()  # before torch and OpenMMLab are imported

import yaml  # noqa: E402
from mmengine.config import Config  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FOLDER = os.path.join(ROOT, 'configs', 'classification')
README = os.path.join(FOLDER, 'README.md')
TABLE_START, TABLE_END = '<!-- classification-table:start -->', '<!-- classification-table:end -->'
#: A preset's main config: ``regnet{x,y}-<size>_8xb<n>_in1k.py`` (no -rgb/-tv variant).
MAIN_CONFIG = re.compile(r'^regnet[xy]-[0-9.]+[mg]f_8xb\d+_in1k\.py$')
INPUT_SIZE = 224


def metafile_path() -> str:
    """The RegNet metafile that the installed mmpretrain wheel ships."""
    import mmpretrain
    return os.path.join(os.path.dirname(mmpretrain.__file__), '.mim', 'configs', 'regnet',
                        'metafile.yml')


def metafile_url() -> str:
    """Where the installed mmpretrain version's RegNet metafile is published."""
    import mmpretrain
    return (f'https://github.com/open-mmlab/mmpretrain/blob/v{mmpretrain.__version__}/'
            'configs/regnet/metafile.yml')


def published_results() -> Dict[str, Dict[str, float]]:
    """mmpretrain's ImageNet metrics by config file name, from its metafile."""
    with open(metafile_path()) as f:
        models = yaml.safe_load(f)['Models']
    results = {}
    for model in models:
        metrics = {}
        for result in model.get('Results') or []:
            metrics.update(result['Metrics'])
        results[os.path.basename(model['Config'])] = metrics
    return results


def config_rows(load: Callable[[str], Config] = Config.fromfile) -> List[Dict]:
    """One row per preset's main config, in the preset table's order.

    Args:
        load: Loads a config file (a caller may pass a caching one).
    """
    from mmregnet import PRESETS, complexity
    from mmregnet.arch import arch_name
    published = published_results()
    rows = []
    for path in glob.glob(os.path.join(FOLDER, '*.py')):
        name = os.path.basename(path)
        if not MAIN_CONFIG.match(name):
            continue
        cfg = load(path)
        backbone, head = cfg.model.backbone, cfg.model.head
        cx = complexity(backbone.arch, input_size=INPUT_SIZE, num_classes=head.num_classes)
        variants = sorted(os.path.basename(p) for p in glob.glob(os.path.join(
            FOLDER, f"{name.split('_')[0]}*_{name.split('_')[1]}-*_in1k.py")))
        rows.append(dict(name=name, arch=arch_name(backbone.arch), params=cx['params'],
                         flops=cx['flops'], variants=variants,
                         published=published.get(name)))
    return sorted(rows, key=lambda r: list(PRESETS).index(r['arch']))


def _accuracy(metrics: Optional[Dict[str, float]]) -> str:
    if not metrics:
        return '—'
    return f"{metrics['Top 1 Accuracy']:.2f} / {metrics['Top 5 Accuracy']:.2f}"


def render_table(rows: List[Dict]) -> str:
    """The markdown table of configs/classification/README.md."""
    lines = ['| config | backbone | params | FLOPs (MACs) | top-1 / top-5, mmpretrain '
             f'([metafile]({metafile_url()})) | variants |',
             '|---|---|---|---|---|---|']
    for r in rows:
        variants = ', '.join(f'[{v[:-3]}]({v})' for v in r['variants'])
        lines.append(f"| [{r['name'][:-3]}]({r['name']}) | {r['arch']} "
                     f"| {r['params'] / 1e6:.2f}M | {r['flops'] / 1e9:.2f}G "
                     f"| {_accuracy(r['published'])} | {variants} |")
    return '\n'.join(lines) + '\n'


def _with_table(readme: str, table: str) -> str:
    start, end = readme.index(TABLE_START) + len(TABLE_START), readme.index(TABLE_END)
    return readme[:start] + '\n' + table + readme[end:]


def main(argv=None) -> int:
    """Writes (or with --check, verifies) the table; returns the exit status."""
    from mmregnet.fileio import atomic_output
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--check', action='store_true', help='fail if the table is stale')
    args = parser.parse_args(argv)
    with open(README) as f:
        readme = f.read()
    wanted = _with_table(readme, render_table(config_rows()))
    if wanted == readme:
        return 0
    if args.check:
        print(f'stale: {os.path.relpath(README, ROOT)}; run python '
              'tools/misc/classification_index.py', file=sys.stderr)
        return 1
    with atomic_output(README, force=True) as tmp, open(tmp, 'w') as f:
        f.write(wanted)
    return 0


if __name__ == '__main__':
    sys.exit(main())
