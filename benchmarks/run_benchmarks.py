"""The standard comparisons, and the README's results table.

Runs each comparison side by side in one fresh child process (see
:mod:`mmregnet.benchmark.isolate`), so no figure depends on the order:

1. stem-less regnetx_400mf on a 1x64x400x400 pseudo image (nuScenes
   PointPillars) against mmdet3d's ``NoStemRegNet``: inference and training;
2. regnetx_400mf with the stem on 8x3x224x224 against mmdet's ``RegNet``:
   inference (with the multiply-add rate as a fraction of the matmul rate)
   and training;
3. peak memory of a training step of regnetx_1.6gf (no stem, 2x64x400x400)
   without and with ``with_cp``;
4. every PointPillars config in ``configs/regnet``, points to boxes on a
   generated nuScenes-like 30k-point frame: mmdet3d's eager ``test_step``,
   the same under ``torch.compile``, mmregnet's PyTorch deploy and the
   exported detector on ONNX Runtime; the per-stage split and the backbone
   alone (:func:`mmregnet.benchmark.detector_race.run_detector`).

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

from mmregnet.warning_filters import hide_third_party_warnings  # noqa: E402

hide_third_party_warnings()  # before torch and OpenMMLab are imported

from mmregnet.benchmark import (BackboneCase, run_backbone, run_detector,  # noqa: E402
                                run_with_cp_memory)
from mmregnet.benchmark.isolate import in_fresh_process  # noqa: E402
from mmregnet.benchmark.report import (STATS_COLUMNS, detector_markdown,  # noqa: E402
                                       machine_info, markdown_table, stats_rows, write_json,
                                       write_text)

README_COLUMNS = (('config', 'config'), ('arch', 'backbone'), ('params', 'params (M)'),
                  ('flops', 'FLOPs (G)'), ('boxes', 'boxes to NMS'),
                  ('reference', 'mmdet3d eager ms'), ('compile', 'torch.compile ms'),
                  ('deploy', 'deploy (PyTorch) ms'),
                  ('onnxruntime', 'ONNX Runtime ms'),
                  ('speedup', 'ONNX Runtime speed-up'), ('int8', 'int8 ms'),
                  ('int8_speedup', 'int8 speed-up'), ('bb_speedup', 'backbone alone'))


def readme_row(result: dict) -> dict:
    """One README row from :func:`run_detector`'s result: median ms per contender."""
    backbone, race = result['backbone'], result['detector']
    row = dict(config=os.path.basename(result['config']).replace('.py', ''),
               arch=backbone['arch'], params=f"{backbone['params'] / 1e6:.2f}",
               flops=f"{backbone['flops'] / 1e9:.1f}", boxes=result['boxes_to_nms'],
               speedup=f"{race['onnxruntime']['speedup']:.2f}x",
               bb_speedup=f"{result['backbone_only']['onnxruntime']['speedup']:.2f}x")
    for name, key in (('reference', 'reference'), ('compile', 'reference+compile'),
                      ('deploy', 'deploy'),
                      ('onnxruntime', 'onnxruntime'), ('int8', 'onnxruntime-int8')):
        row[name] = f"{race[key]['median_ms']:.0f}" if key in race else None
    int8 = race.get('onnxruntime-int8')
    row['int8_speedup'] = f"{int8['speedup']:.2f}x" if int8 else None
    return row


def parse_args(argv=None) -> argparse.Namespace:
    """Parses the command line."""
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', default=os.path.join(ROOT, 'benchmarks', 'results'),
                   help='folder for results.json and results.md (created if missing)')
    p.add_argument('--reps', type=int, default=20,
                   help='timed rounds of backbones, inference and training (20)')
    p.add_argument('--detector-reps', type=int, default=5, help='timed detector rounds (5)')
    p.add_argument('--warmup', type=int, default=2, help='untimed rounds first (2)')
    p.add_argument('--num-points', type=int, default=30000,
                   help='points of the generated frame (30000)')
    p.add_argument('--configs', default=os.path.join(ROOT, 'configs', 'regnet',
                                                     'pointpillars_*.py'),
                   help='glob of detector configs (demo configs are left out)')
    p.add_argument('--threads', type=int, default=0, help='torch threads (default: as is)')
    p.add_argument('--skip', nargs='*', default=[],
                   choices=['bev', 'image', 'with_cp', 'detectors'],
                   help='parts to leave out')
    args = p.parse_args(argv)
    if min(args.reps, args.detector_reps, args.warmup, args.num_points) < 1:
        p.error('--reps, --detector-reps, --warmup and --num-points must be at least 1 '
                '(torch.compile compiles in the first warm-up round)')
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
        r = in_fresh_process(run_backbone, case, reps=args.reps, warmup=args.warmup, jit=True,
                             compile=True, train=True, threads=args.threads)
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
    rows, detector_md = [], []
    if 'detectors' not in args.skip:
        results['detectors'] = []
        # The CPU demo configs (a 64x64 grid, a slimmer head) are not published detectors.
        for config in sorted(c for c in glob.glob(args.configs) if 'demo' not in c):
            r = in_fresh_process(run_detector, config, num_points=args.num_points,
                                 reps=args.detector_reps, warmup=args.warmup,
                                 threads=args.threads)
            results['detectors'].append(r)
            rows.append(readme_row(r))
            detector_md.append(detector_markdown(r))
            print(markdown_table(rows[-1:], README_COLUMNS), detector_md[-1], sep='\n',
                  flush=True)
    m = results['machine']
    machine = (f"Measured with `benchmarks/run_benchmarks.py` on {m['cpu']}, {m['cores']} cores, "
               f"{m['torch_threads']} torch threads, torch {m['torch']}, onnxruntime "
               f"{m['onnxruntime']}; median ms of {args.detector_reps} interleaved rounds, "
               f"batch 1, a generated nuScenes-like frame of {args.num_points} points (a 32-beam "
               f"LiDAR ray-cast through a street scene) with seeded random weights whose class "
               f"bias lets 300 boxes reach NMS. mmdet3d eager: the config with mmdet3d's "
               f"NoStemRegNet (RegNetY, which mmdet3d lacks: mmregnet's eval model), `test_step` "
               f"from points to boxes; torch.compile: the same with its encoder, scatter, "
               f"backbone, neck and head compiled; deploy: `switch_detector_to_deploy`; ONNX "
               f"Runtime: `OnnxDetector` on the exported graph, points to boxes; int8: the "
               f"export with `--int8`, calibrated on four other generated frames (other boxes: "
               f"judge it by its metric). Backbone alone: ONNX Runtime "
               f"against the eager backbone on the frame's pseudo image.\n")
    readme = '## Speed\n\n' + machine + '\n' + markdown_table(rows, README_COLUMNS) if rows else ''
    write_json(os.path.join(args.out, 'results.json'), results)
    write_text(os.path.join(args.out, 'results.md'), '\n'.join([readme] + detector_md + md))
    print(readme)


if __name__ == '__main__':
    main()
