"""Speed and memory of mmregnet's RegNet and deployed detectors against mmdet's / mmdet3d's.

Examples (CPU, the machine's default threads)::

    # stem-less backbone on the nuScenes PointPillars pseudo image
    python tools/analysis_tools/benchmark.py backbone regnetx_400mf --no-stem \\
        --input 1 64 400 400 --reps 20 --json bev.json
    # image backbone, with training steps and peak memory
    python tools/analysis_tools/benchmark.py backbone regnetx_400mf --input 8 3 224 224 \\
        --train --memory
    # a whole detector, points to boxes: mmdet3d eager, torch.compile, deploy, ONNX Runtime,
    # with the per-stage split and the backbone alone (a generated 30k-point frame, or
    # --points file.bin; --markdown writes the tables)
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

from mmregnet.warning_filters import hide_third_party_warnings  # noqa: E402

hide_third_party_warnings()  # before torch and OpenMMLab are imported

from mmregnet.benchmark import (BackboneCase, run_backbone, run_detector,  # noqa: E402
                                run_with_cp_memory)
from mmregnet.benchmark.report import (STATS_COLUMNS, detector_markdown,  # noqa: E402
                                       machine_info, markdown_table, stats_rows, write_json,
                                       write_text)


def _common(p: argparse.ArgumentParser, device: bool = True) -> None:
    if device:
        p.add_argument('--device', default='cpu', help="'cpu' or 'cuda[:i]' (default: cpu)")
        p.add_argument('--amp', action='store_true', help='autocast (bf16 on CPU, fp16 on CUDA)')
    p.add_argument('--reps', type=int, default=10, help='timed rounds (default: 10)')
    p.add_argument('--warmup', type=int, default=2, help='untimed rounds first (default: 2)')
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
                           help="also mmdet's model under torch.compile (inductor, freezing)")
            p.add_argument('--no-onnx', action='store_true',
                           help='leave ONNX Runtime out of the race')
            p.add_argument('--train', action='store_true', help='also race training steps')
            p.add_argument('--memory', action='store_true',
                           help='also peak memory per model (CPU: one process each)')
    p = sub.add_parser('detector', help='race a whole PointPillars detector, points to boxes')
    p.add_argument('config', help='config with mmregnet RegNet as pts_backbone')
    p.add_argument('--checkpoint', help='weights (default: seeded random ones)')
    p.add_argument('--points', help='a real .bin point cloud (float32 rows)')
    p.add_argument('--load-dim', type=int, default=5, help='values per stored point (default 5)')
    p.add_argument('--num-points', type=int, default=30000,
                   help='points of the generated nuScenes-like frame (default: 30000)')
    p.add_argument('--boxes', type=int, default=300,
                   help='with random weights, anchors that pass the score threshold (300)')
    p.add_argument('--no-compile', action='store_true', help='leave torch.compile out')
    p.add_argument('--no-int8', action='store_true',
                   help='leave the int8 export (calibrated on other generated frames) out')
    p.add_argument('--markdown', help='also write the tables to this .md file')
    _common(p, device=False)
    args = parser.parse_args(argv)
    if args.reps < 1 or args.warmup < 0:
        parser.error(f'--reps must be >= 1 and --warmup >= 0, got {args.reps} and {args.warmup}')
    device = getattr(args, 'device', 'cpu')
    if device.startswith('cuda'):
        import torch
        if not torch.cuda.is_available():
            parser.error(f'--device {device}: this torch sees no CUDA device')
    elif device != 'cpu':
        parser.error(f"--device must be 'cpu' or 'cuda[:i]', got {device!r}")
    if args.command == 'detector':
        for flag, path in (('config', args.config), ('--checkpoint', args.checkpoint),
                           ('--points', args.points)):
            if path and not os.path.isfile(path):
                parser.error(f'{flag} {path}: no such file')
        if args.num_points < 1 or args.boxes < 1:
            parser.error(f'--num-points and --boxes must be >= 1, got {args.num_points} and '
                         f'{args.boxes}')
        if not args.no_compile and args.warmup < 1:
            parser.error('torch.compile compiles in the first round: --warmup must be >= 1 '
                         '(or pass --no-compile)')
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
                              args.load_dim, args.reps, args.warmup, args.threads, args.boxes,
                              compile=not args.no_compile, int8=not args.no_int8)
    else:
        if args.command == 'with-cp':
            result = run_with_cp_memory(args.case, args.device, args.threads)
        else:
            result = run_backbone(args.case, args.device, args.reps, args.warmup, args.amp,
                                  args.jit, args.compile, args.train, args.memory, args.threads,
                                  onnx=not args.no_onnx)
    result['machine'] = machine_info()
    return result


def render(result: dict) -> str:
    """The results as markdown tables."""
    if 'reduction' in result:
        return (f"peak memory of one training step, {result['case']}: "
                f"{result['plain_bytes'] / 2**20:.0f} MiB plain, "
                f"{result['with_cp_bytes'] / 2**20:.0f} MiB with_cp "
                f"({100 * result['reduction']:.0f}% less)\n")
    if 'stages' in result:
        return detector_markdown(result)
    parts = []
    for key in ('inference', 'inference_compiled', 'train'):
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
    tables = render(result)
    print(tables)
    if args.json:
        write_json(args.json, result)
    if getattr(args, 'markdown', None):
        write_text(args.markdown, tables)


if __name__ == '__main__':
    main()
