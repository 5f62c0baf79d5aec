"""Speed and memory of mmregnet's RegNet against mmdet's / mmdet3d's, side by side.

Examples (CPU, the machine's default threads)::

    # stem-less backbone on the nuScenes PointPillars pseudo image
    python tools/analysis_tools/benchmark.py backbone regnetx_400mf --no-stem \\
        --input 1 64 400 400 --reps 20 --json bev.json
    # image backbone, with training steps and peak memory
    python tools/analysis_tools/benchmark.py backbone regnetx_400mf --input 8 3 224 224 \\
        --train --memory
    # a whole detector on a generated point cloud (or --points file.bin)
    python tools/analysis_tools/benchmark.py detector \\
        configs/regnet/pointpillars_hv_regnet-400mf_fpn_sbn-all_8xb4-2x_nus-3d.py
    # peak memory of a training step without and with with_cp
    python tools/analysis_tools/benchmark.py with-cp regnetx_1.6gf --no-stem --input 2 64 400 400
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))

from mmregnet.benchmark import (BackboneCase, run_backbone, run_detector,  # noqa: E402
                                run_with_cp_memory)
from mmregnet.benchmark.report import (STATS_COLUMNS, machine_info, markdown_table,  # noqa: E402
                                       stats_rows, write_json)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument('--device', default='cpu', help="'cpu' or 'cuda[:i]' (default: cpu)")
    p.add_argument('--reps', type=int, default=10, help='timed rounds (default: 10)')
    p.add_argument('--warmup', type=int, default=2, help='untimed rounds first (default: 2)')
    p.add_argument('--amp', action='store_true', help='autocast (bf16 on CPU, fp16 on CUDA)')
    p.add_argument('--threads', type=int, default=0, help='torch threads (default: as is)')
    p.add_argument('--json', help='also write the results to this JSON file')


def parse_args(argv=None) -> argparse.Namespace:
    """Parses the command line (``argv`` defaults to ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    for name, text in (('backbone', 'race backbones'),
                       ('with-cp', 'peak training memory without and with with_cp')):
        p = sub.add_parser(name, help=text)
        p.add_argument('arch', help='preset name, e.g. regnetx_400mf')
        p.add_argument('--input', type=int, nargs=4, metavar=('N', 'C', 'H', 'W'),
                       default=[8, 3, 224, 224], help='input shape (default: 8 3 224 224)')
        p.add_argument('--no-stem', action='store_true',
                       help='stem-less PointPillars backbone (strides 1 2 2 2, stages 1-3)')
        _common(p)
        if name == 'backbone':
            p.add_argument('--jit', action='store_true', help='also deploy + trace + freeze')
            p.add_argument('--compile', action='store_true',
                           help='also deploy + torch.compile (inductor, freezing)')
            p.add_argument('--train', action='store_true', help='also race training steps')
            p.add_argument('--memory', action='store_true',
                           help='also peak memory per model (CPU: one process each)')
    p = sub.add_parser('detector', help='race whole PointPillars detectors')
    p.add_argument('config', help='config with mmregnet RegNet as pts_backbone')
    p.add_argument('--checkpoint', help='weights (default: seeded random ones)')
    p.add_argument('--points', help='a real .bin point cloud (float32 rows)')
    p.add_argument('--load-dim', type=int, default=5, help='values per stored point (default 5)')
    p.add_argument('--num-points', type=int, default=30000,
                   help='points of the generated cloud (default: 30000)')
    _common(p)
    args = parser.parse_args(argv)
    if args.reps < 1 or args.warmup < 0:
        parser.error(f'--reps must be >= 1 and --warmup >= 0, got {args.reps} and {args.warmup}')
    if args.device.startswith('cuda'):
        import torch
        if not torch.cuda.is_available():
            parser.error(f'--device {args.device}: this torch sees no CUDA device')
    elif args.device != 'cpu':
        parser.error(f"--device must be 'cpu' or 'cuda[:i]', got {args.device!r}")
    if args.command == 'detector':
        for flag, path in (('config', args.config), ('--checkpoint', args.checkpoint),
                           ('--points', args.points)):
            if path and not os.path.isfile(path):
                parser.error(f'{flag} {path}: no such file')
    else:
        try:
            args.case = BackboneCase(args.arch, tuple(args.input), with_stem=not args.no_stem)
        except ValueError as e:
            parser.error(str(e))
    return args


def run(args: argparse.Namespace) -> dict:
    """Runs the chosen measurement and returns its results (with the machine)."""
    if args.command == 'detector':
        result = run_detector(args.config, args.checkpoint, args.num_points, args.points,
                              args.load_dim, args.device, args.reps, args.warmup, args.amp,
                              args.threads)
    else:
        if args.command == 'with-cp':
            result = run_with_cp_memory(args.case, args.device, args.threads)
        else:
            result = run_backbone(args.case, args.device, args.reps, args.warmup, args.amp,
                                  args.jit, args.compile, args.train, args.memory, args.threads)
    result['machine'] = machine_info()
    return result


def render(result: dict) -> str:
    """The results as markdown tables."""
    if 'reduction' in result:
        return (f"peak memory of one training step, {result['case']}: "
                f"{result['plain_bytes'] / 2**20:.0f} MiB plain, "
                f"{result['with_cp_bytes'] / 2**20:.0f} MiB with_cp "
                f"({100 * result['reduction']:.0f}% less)\n")
    parts = []
    for key in ('inference', 'inference_compiled', 'train', 'detector', 'network',
                'backbone_only'):
        if key in result:
            stats = {k: v for k, v in result[key].items() if k != '(matmul)'}
            mm = result[key]['(matmul)']
            parts.append(f"### {key} (matmul {mm['size']}^3: {mm['macs_per_s'] / 1e9:.1f} "
                         f'GMAC/s)\n\n' + markdown_table(stats_rows(stats), STATS_COLUMNS))
    return '\n'.join(parts)


def main(argv=None) -> None:
    """Entry point."""
    args = parse_args(argv)
    result = run(args)
    print(json.dumps(result['machine']))
    print(render(result))
    if args.json:
        write_json(args.json, result)


if __name__ == '__main__':
    main()
