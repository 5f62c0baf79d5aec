"""The standard comparisons of the issue, and the README's results table.

Runs each comparison side by side in one fresh child process (see
:mod:`mmregnet.benchmark.isolate`), so no figure depends on the order:

1. stem-less regnetx_400mf on a 1x64x400x400 pseudo image (nuScenes
   PointPillars) against mmdet3d's ``NoStemRegNet``: inference and training;
2. regnetx_400mf with the stem on 8x3x224x224 against mmdet's ``RegNet``:
   inference (with the multiply-add rate as a fraction of the matmul rate)
   and training;
3. peak memory of a training step of regnetx_1.6gf (no stem, 2x64x400x400)
   without and with ``with_cp``;
4. every PointPillars config in ``configs/regnet``: backbone params and
   FLOPs, backbone and whole-detector frames/s, reference against deploy.

Writes ``<out>/results.json`` (everything) and ``<out>/results.md`` (the
tables, the README one first). Usage::

    python benchmarks/run_benchmarks.py --out benchmarks/results
"""
import argparse
import glob
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from mmregnet.benchmark import (BackboneCase, run_backbone, run_detector,  # noqa: E402
                                run_with_cp_memory)
from mmregnet.benchmark.isolate import in_fresh_process  # noqa: E402
from mmregnet.benchmark.report import (STATS_COLUMNS, machine_info, markdown_table,  # noqa: E402
                                       stats_rows, write_json)

README_COLUMNS = (('config', 'config'), ('arch', 'backbone'), ('params', 'params (M)'),
                  ('flops', 'FLOPs (G)'), ('bb_ref', 'backbone fps, reference'),
                  ('bb_deploy', 'backbone fps, deploy'), ('bb_speedup', 'speed-up'),
                  ('net_ref', 'network fps, reference'), ('net_deploy', 'network fps, deploy'),
                  ('net_speedup', 'speed-up'), ('det_ref', 'detector fps, reference'),
                  ('det_deploy', 'detector fps, deploy'), ('det_speedup', 'speed-up'))


def readme_row(result: dict) -> dict:
    """One README row from :func:`run_detector`'s result."""
    backbone = result['backbone']
    row = dict(config=os.path.basename(result['config']).replace('.py', ''),
               arch=backbone['arch'], params=f"{backbone['params'] / 1e6:.2f}",
               flops=f"{backbone['flops'] / 1e9:.1f}")
    for prefix, part in (('bb', 'backbone_only'), ('net', 'network'), ('det', 'detector')):
        stats = result[part]
        row.update({f'{prefix}_ref': f"{stats['reference']['fps']:.2f}",
                    f'{prefix}_deploy': f"{stats['deploy']['fps']:.2f}",
                    f'{prefix}_speedup': f"{stats['deploy']['speedup']:.2f}x"})
    return row


def parse_args(argv=None) -> argparse.Namespace:
    """Parses the command line."""
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', default=os.path.join(ROOT, 'benchmarks', 'results'),
                   help='folder for results.json and results.md (created if missing)')
    p.add_argument('--reps', type=int, default=20,
                   help='timed rounds of backbones, inference and training (20)')
    p.add_argument('--detector-reps', type=int, default=5, help='timed detector rounds (5)')
    p.add_argument('--configs', default=os.path.join(ROOT, 'configs', 'regnet',
                                                     'pointpillars_*.py'),
                   help='glob of detector configs (demo configs are left out)')
    p.add_argument('--threads', type=int, default=0, help='torch threads (default: as is)')
    p.add_argument('--skip', nargs='*', default=[],
                   choices=['bev', 'image', 'with_cp', 'detectors'],
                   help='parts to leave out')
    args = p.parse_args(argv)
    if min(args.reps, args.detector_reps) < 1:
        p.error('every --*reps must be at least 1')
    return args


def main(argv=None) -> None:
    """Runs the comparisons, prints the tables, writes results.json and results.md."""
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    results = dict(machine=machine_info())
    md = []
    for key, case in (('bev', BackboneCase('regnetx_400mf', (1, 64, 400, 400), with_stem=False)),
                      ('image', BackboneCase('regnetx_400mf', (8, 3, 224, 224)))):
        if key in args.skip:
            continue
        r = in_fresh_process(run_backbone, case, reps=args.reps, jit=True, compile=True,
                             train=True, threads=args.threads)
        results[key] = r
        parts = (('inference', 'inference'),
                 ('inference_compiled', 'inference, traced and compiled (a second race)'),
                 ('train', 'train'))
        for part, title in parts:
            stats = {k: v for k, v in r[part].items() if k != '(matmul)'}
            mm = r[part]['(matmul)']['macs_per_s'] / 1e9
            md.append(f'### {case.arch} {"x".join(map(str, case.input_shape))} '
                      f'{"with" if case.with_stem else "without"} stem, {title} '
                      f'(matmul rate {mm:.1f} GMAC/s)\n\n'
                      + markdown_table(stats_rows(stats), STATS_COLUMNS))
        print(*md[-len(parts):], sep='\n', flush=True)
    if 'with_cp' not in args.skip:
        cp = run_with_cp_memory(BackboneCase('regnetx_1.6gf', (2, 64, 400, 400), with_stem=False),
                                threads=args.threads)
        results['with_cp'] = cp
        md.append(f"### with_cp, regnetx_1.6gf 2x64x400x400 training step\n\n"
                  f"peak memory {cp['plain_bytes'] / 2**20:.0f} MiB plain, "
                  f"{cp['with_cp_bytes'] / 2**20:.0f} MiB with_cp: "
                  f"{100 * cp['reduction']:.0f}% less\n")
        print(md[-1], flush=True)
    rows = []
    if 'detectors' not in args.skip:
        results['detectors'] = []
        # The CPU demo config (a 64x64 grid, a slimmer head) is not a published detector.
        for config in sorted(c for c in glob.glob(args.configs) if 'demo' not in c):
            r = in_fresh_process(run_detector, config, reps=args.detector_reps,
                                 threads=args.threads)
            results['detectors'].append(r)
            rows.append(readme_row(r))
            print(markdown_table(rows[-1:], README_COLUMNS), flush=True)
    m = results['machine']
    machine = (f"Measured with `benchmarks/run_benchmarks.py` on {m['cpu']}, {m['cores']} cores, "
               f"{m['torch_threads']} torch threads, torch {m['torch']}; frames/s at the median "
               f"of interleaved rounds, batch 1, generated 30k-point clouds. Reference: the same "
               f"config and weights with mmdet3d's NoStemRegNet (RegNetY, which mmdet3d lacks: "
               f"mmregnet's eval model); deploy: `switch_detector_to_deploy`. Backbone FLOPs are "
               f"multiply-adds on the config's pseudo image. Network: pseudo image to head maps "
               f"(backbone, neck, head); detector: the whole `test_step` from points to boxes.\n")
    readme = '## Speed\n\n' + machine + '\n' + markdown_table(rows, README_COLUMNS) if rows else ''
    write_json(os.path.join(args.out, 'results.json'), results)
    with open(os.path.join(args.out, 'results.md.tmp'), 'w') as f:
        f.write('\n'.join([readme] + md))
    os.replace(os.path.join(args.out, 'results.md.tmp'), os.path.join(args.out, 'results.md'))
    print(readme)


if __name__ == '__main__':
    main()
