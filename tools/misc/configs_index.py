"""Generates configs/README.md's table and configs/regnet/metafile.yml from the configs.

Backbone params and FLOPs come from mmregnet's analytic complexity at each
config's input size; published results are read from the metafiles mmdet3d
(its regnet/, free_anchor/ and ssn/ folders) and mmdet install, and are theirs
(trained with their RegNet), not ours.

Usage:
    python tools/misc/configs_index.py           # rewrite both files
    python tools/misc/configs_index.py --check   # exit 1 if either is stale
"""
import argparse
import glob
import os
import re
import sys
from typing import Dict, List

from mmregnet.warning_filters import hide_third_party_warnings

hide_third_party_warnings()  # before torch and OpenMMLab are imported

import yaml  # noqa: E402
from mmengine.config import Config  # noqa: E402

from mmregnet.fileio import atomic_output  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
README = os.path.join(ROOT, 'configs', 'README.md')
METAFILE = os.path.join(ROOT, 'configs', 'regnet', 'metafile.yml')
TABLE_START, TABLE_END = '<!-- configs-table:start -->', '<!-- configs-table:end -->'
#: mmdet's test-time image scale: short side 800, long side at most 1333.
IMAGE_INPUT = (800, 1333)
#: The upstream config folders whose metafiles hold results of RegNet configs.
UPSTREAM_FOLDERS = {'mmdet3d': ('regnet', 'free_anchor', 'ssn'), 'mmdet': ('regnet',)}
_UPSTREAM_DOCS = {'mmdet3d': 'https://github.com/open-mmlab/mmdetection3d/tree/v1.4.0/configs/',
                  'mmdet': 'https://github.com/open-mmlab/mmdetection/tree/v3.3.0/configs/'}
#: The detector each 3D head type makes, for the metafile's Architecture.
_HEAD_ARCHITECTURE = {'FreeAnchor3DHead': 'Free Anchor', 'ShapeAwareHead': 'SSN'}


def _upstream_name(name: str) -> str:
    """mmdet3d's metafiles name some configs by pre-1.0 file names: map them to
    today's grammar so they match the files that exist ('2x8_2x' -> '8xb2-2x',
    'hv_ssn_' -> 'ssn_hv_')."""
    name = re.sub(r'^hv_ssn_', 'ssn_hv_', name)
    return re.sub(r'_(\d+)x(\d+)_(\w+?)_', r'_\2xb\1-\3_', name)


def published_results() -> Dict[str, Dict]:
    """Published results by config file name, from the installed metafiles.

    Only a metafile's entries for configs in its own folder count (mmdet3d's
    free_anchor metafile also lists a regnet/ config, as a baseline).
    """
    results = {}
    for package, folders in UPSTREAM_FOLDERS.items():
        configs = os.path.join(os.path.dirname(__import__(package).__file__), '.mim', 'configs')
        for folder in folders:
            with open(os.path.join(configs, folder, 'metafile.yml')) as f:
                models = yaml.safe_load(f)['Models']
            for model in models:
                if os.path.basename(os.path.dirname(model['Config'])) != folder:
                    continue
                metrics = {}
                for result in model.get('Results', []):
                    metrics.update(result['Metrics'])
                dataset = model['Results'][0]['Dataset'] if model.get('Results') else None
                entry = dict(source=package, folder=folder, dataset=dataset, metrics=metrics)
                for name in (os.path.basename(model['Config']),
                             _upstream_name(model['Name']) + '.py'):
                    results[name] = entry
    return results


def config_rows() -> List[Dict]:
    """One row per config: arch, input, backbone complexity, published results."""
    from mmregnet import complexity
    from mmregnet.arch import arch_name
    published = published_results()
    rows = []
    for path in sorted(glob.glob(os.path.join(ROOT, 'configs', 'regnet', '*.py'))):
        name = os.path.basename(path)
        if 'demo' in name:  # the demo's configs fit its generated data only
            continue
        cfg = Config.fromfile(path)
        is_3d = 'pts_backbone' in cfg.model
        backbone = cfg.model.pts_backbone if is_3d else cfg.model.backbone
        size = tuple(cfg.model.pts_middle_encoder.output_shape) if is_3d else IMAGE_INPUT
        in_channels = backbone.get('in_channels', 3)
        cx = complexity(backbone.arch, input_size=size, num_classes=None,
                        in_channels=in_channels, with_stem=backbone.get('with_stem', True),
                        strides=backbone.get('strides'))
        head = cfg.model.pts_bbox_head.type if is_3d else None
        rows.append(dict(name=name, arch=arch_name(backbone.arch) or 'custom',
                         input=f'{in_channels}x{size[0]}x{size[1]}', params=cx['params'],
                         flops=cx['flops'], task='3D' if is_3d else '2D',
                         detector=_HEAD_ARCHITECTURE.get(head, 'PointPillars') if is_3d else None,
                         published=published.get(name)))
    return rows


def _si(n: float) -> str:
    for unit, scale in (('G', 1e9), ('M', 1e6), ('K', 1e3)):
        if n >= scale:
            return f'{n / scale:.2f}{unit}'
    return str(n)


def render_table(rows: List[Dict]) -> str:
    """The markdown table of configs/README.md."""
    lines = ['| config | backbone | input | backbone params | backbone FLOPs (MACs) '
             '| published result (theirs) |', '|---|---|---|---|---|---|']
    for r in rows:
        pub = r['published']
        result = 'none published' if pub is None else (
            ', '.join(f'{k} {v}' for k, v in pub['metrics'].items())
            + f" ({pub['dataset']}, [{pub['source']}]"
            f"({_UPSTREAM_DOCS[pub['source']] + pub['folder']}))")
        lines.append(f"| [{r['name'][:-3]}](regnet/{r['name']}) | {r['arch']} | {r['input']} "
                     f"| {_si(r['params'])} | {_si(r['flops'])} | {result} |")
    return '\n'.join(lines) + '\n'


def render_metafile(rows: List[Dict]) -> str:
    """configs/regnet/metafile.yml in OpenMMLab's model-index format."""
    models = []
    for r in rows:
        meta = {'Architecture': ['RegNetY' if 'regnety' in r['arch'] else 'RegNetX'] + (
            ['Hard Voxelization', r['detector']] if r['task'] == '3D' else []),
            'Backbone Params': r['params'], 'Backbone FLOPs': r['flops'],
            'Input': r['input']}
        model = {'Name': r['name'][:-3], 'In Collection': 'mmregnet RegNet',
                 'Config': f"configs/regnet/{r['name']}", 'Metadata': meta}
        if r['published']:
            meta['Published Results'] = dict(r['published'])
        models.append(model)
    index = {'Collections': [{'Name': 'mmregnet RegNet', 'Metadata': {
        'Architecture': ['RegNetX', 'RegNetY']},
        'Paper': {'Title': 'Designing Network Design Spaces',
                  'URL': 'https://arxiv.org/abs/2003.13678'}}], 'Models': models}
    return ('# Generated by tools/misc/configs_index.py; published results are those of\n'
            '# mmdet3d / mmdet with their own RegNet, not results of mmregnet.\n'
            + yaml.safe_dump(index, sort_keys=False, width=100))


def _with_table(readme: str, table: str) -> str:
    start, end = readme.index(TABLE_START) + len(TABLE_START), readme.index(TABLE_END)
    return readme[:start] + '\n' + table + readme[end:]


def main(argv=None) -> int:
    """Writes (or with --check, verifies) the configs table and the metafile."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--check', action='store_true', help='fail if a file is stale')
    args = parser.parse_args(argv)
    rows = config_rows()
    with open(README) as f:
        readme = f.read()
    wanted = {README: _with_table(readme, render_table(rows)), METAFILE: render_metafile(rows)}
    stale = []
    for path, text in wanted.items():
        current = open(path).read() if os.path.exists(path) else None
        if current != text:
            stale.append(os.path.relpath(path, ROOT))
            if not args.check:
                with atomic_output(path, force=True) as tmp, open(tmp, 'w') as f:
                    f.write(text)
    if args.check and stale:
        print(f'stale: {", ".join(stale)}; run python tools/misc/configs_index.py',
              file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
