"""``mmregnet``: explore, size and pick RegNets from the command line.

Subcommands: ``list`` (the presets), ``show`` (one arch as a detector backbone,
with config snippets), ``fit`` (search the design space for a complexity),
``sample`` (a population, as the paper draws them), ``plot`` (the width rule
of an arch, or EDFs of populations) and ``detect`` (an exported detector on a
point cloud file). ``mmregnet CMD --help`` explains each.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from typing import Callable, Optional, Sequence, TextIO

from .arch import NAMINGS, PRESETS, ArchSpec, arch_from_text, arch_name, get_arch, timm_name
from .design_space.describe import BackboneLayout, describe
from .design_space.fit import RANKS, Target, search
from .design_space.formatting import FORMATS, arch_text, format_records, format_size, \
    parse_size
from .design_space.measure import Measure
from .design_space.population import MAX_NETS, read_column, sample_population, \
    write_population
from .design_space.space import PAPER_FLOPS_RANGE, SPACES
from .deploy.report import detections_json, detections_table, read_cloud, save_bev_png
from .deploy.runtime import OnnxDetector
from .errors import InputError, run_guarded
from .fileio import atomic_output, check_destination, write_bytes
from .warning_filters import hide_third_party_warnings

LIST_COLUMNS = {'name': 'name', 'params': 'params', 'flops': 'flops', 'acts': 'acts',
                'widths': 'widths', 'depths': 'depths', 'group widths': 'group_widths'}
FIT_COLUMNS = {'#': 'rank', 'flops': 'flops', 'vs target': 'deviation', 'params': 'params',
               'acts': 'acts', 'widths': 'widths', 'depths': 'depths',
               'group widths': 'group_widths'}


class Progress:
    """Reports a long loop on stderr: after its first second, at most once a second.

    Args:
        template: ``str.format`` template of the two numbers the loop reports.
        enabled: False to stay silent (``--quiet``).
        stream: Where to write.
        clock: Seconds, monotonic.
    """

    def __init__(self, template: str, enabled: bool = True, stream: Optional[TextIO] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.template, self.enabled, self.clock = template, enabled, clock
        self.stream = stream if stream is not None else sys.stderr
        self.start = self.last = clock()

    def __call__(self, first: int, second: int) -> None:
        """Reports the loop's two numbers if a second has passed since the last report."""
        now = self.clock()
        if self.enabled and now - self.last >= 1.0:
            self.last = now
            print(self.template.format(first, second), file=self.stream, flush=True)


def parse_arch(text: str) -> ArchSpec:
    """A preset name or a JSON dict of arch fields, as given on the command line."""
    return get_arch(arch_from_text(text))


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_input_options(p: argparse.ArgumentParser) -> None:
    p.add_argument('--input-size', nargs=2, type=int, metavar=('H', 'W'), default=(224, 224),
                   help='input height and width (default: 224 224)')
    p.add_argument('--in-channels', type=int, default=3, metavar='C',
                   help='input channels (default 3; 64 for a PointPillars pseudo image)')
    p.add_argument('--no-stem', action='store_true', help='no 3x3 stride-2 stem')
    p.add_argument('--strides', nargs='+', type=int, metavar='S',
                   help='stride of each stage (default: 2 everywhere)')


def _cmd_list(args: argparse.Namespace) -> str:
    records = []
    for name, spec in PRESETS.items():
        if args.family and not name.startswith('regnet' + args.family):
            continue
        d = spec.design()
        shown = timm_name(name) if args.names == 'timm' else name
        records.append(dict(name=shown, **Measure()(spec), widths=list(d.widths),
                            depths=list(d.depths), group_widths=list(d.group_widths),
                            arch=spec.to_dict()))
    return format_records(records, args.format, LIST_COLUMNS)


def _cmd_show(args: argparse.Namespace) -> str:
    layout = BackboneLayout.create(parse_arch(args.arch), args.input_size, args.in_channels,
                                   not args.no_stem, args.strides, args.out_indices)
    return describe(layout)


def _cmd_fit(args: argparse.Namespace) -> str:
    measure = Measure.create(args.input_size, args.in_channels, not args.no_stem, args.strides,
                             None if args.backbone_only else 1000)
    target = Target(args.flops, args.tolerance, args.params_max, args.acts_max)
    progress = Progress('fit: {0}/{1} shapes searched', not args.quiet)
    found = search(target, args.family, measure, args.top, args.rank, args.seed, args.shapes,
                   progress)
    records = []
    for rank, c in enumerate(found, 1):
        d = c.arch.design()
        records.append(dict(rank=rank, name=arch_name(c.arch), params=c.params, flops=c.flops,
                            acts=c.acts, deviation=f'{target.deviation(c.flops):+.2%}',
                            widths=list(d.widths), depths=list(d.depths),
                            group_widths=list(d.group_widths), arch=c.arch.to_dict()))
    text = format_records(records, args.format, FIT_COLUMNS)
    if args.format != 'table':
        return text
    header = (f'RegNet{args.family.upper()} at {format_size(args.flops)} flops '
              f'(+-{args.tolerance:.0%}), {measure.describe()}; ranked by {args.rank}\n')
    pastes = ''.join(f'{rank}: arch={arch_text(c.arch)}\n' for rank, c in enumerate(found, 1))
    return header + text + '\n' + pastes


def _cmd_sample(args: argparse.Namespace) -> str:
    measure = Measure.create(args.input_size)
    progress = Progress('sample: {0}/%d nets after {1} draws' % args.n, not args.quiet)
    if args.out == '-':
        write_population(sample_population(args.space, args.n, args.seed, args.flops_range,
                                           measure, progress), sys.stdout)
        return ''
    with atomic_output(args.out, args.force) as tmp:  # checks --out before the long part
        rows = sample_population(args.space, args.n, args.seed, args.flops_range, measure,
                                 progress)
        with open(tmp, 'w', newline='') as f:
            write_population(rows, f)
    return f'wrote {len(rows)} nets of {args.space} (seed {args.seed}) to {args.out}\n'


def _cmd_plot(args: argparse.Namespace) -> str:
    try:
        from .design_space.plots import plot_edfs, plot_format, plot_widths  # lazy: matplotlib
    except ModuleNotFoundError as e:  # without the [plot] extra
        raise ValueError(f'plot needs {e.name}, which is not installed: '
                         'pip install "mmregnet[plot]"') from e
    if (args.arch is None) == (not args.edf):
        raise ValueError('plot takes either ARCH (the width rule) or --edf POPULATION... '
                         '(distribution functions), not both or neither')
    plot_format(args.out)
    with atomic_output(args.out, args.force) as tmp:
        if args.edf:
            labels = [os.path.splitext(os.path.basename(p))[0] for p in args.edf]
            if len(set(labels)) < len(labels):
                labels = list(args.edf)
            plot_edfs({label: read_column(p, args.column) for label, p in zip(labels, args.edf)},
                      args.column, tmp, plot_format(args.out))
        else:
            plot_widths(parse_arch(args.arch), tmp, plot_format(args.out))
    return f'wrote {args.out}\n'


def _cmd_detect(args: argparse.Namespace) -> str:
    for path in (args.out, args.png):
        if path:
            check_destination(path, args.force)  # before the detector is opened
    if args.png and importlib.util.find_spec('matplotlib') is None:
        raise InputError(f'--png {args.png} needs matplotlib: pip install matplotlib')
    try:  # onnxruntime is the optional [runtime] extra: a missing one is named in one line
        det = OnnxDetector(args.folder)
    except ImportError as e:
        raise InputError(str(e)) from None
    dims = det.point_dims if args.dims is None else args.dims
    use = min(dims, det.point_dims) if args.use_dims is None else args.use_dims
    points = read_cloud(args.cloud, dims, use)
    found = det.detect(points)
    name = det.manifest.get('config_name', os.path.basename(os.path.normpath(args.folder)))
    text = (f'{name} ({det.precision}) on {args.cloud}: {len(points)} points, '
            f'{len(found)} boxes\n' + detections_table(found))
    if args.out:
        record = detections_json(found, detector=os.path.abspath(args.folder), config=name,
                                 precision=det.precision, cloud=os.path.abspath(args.cloud),
                                 points=len(points))
        write_bytes(args.out, (json.dumps(record, indent=1) + '\n').encode(), args.force)
        text += f'wrote {args.out}\n'
    if args.png:
        with atomic_output(args.png, args.force) as tmp:
            save_bev_png(tmp, points, found, f'{name}: {len(found)} boxes')
        text += f'wrote {args.png}\n'
    return text


def build_parser() -> argparse.ArgumentParser:
    """The ``mmregnet`` argument parser, one subparser per command."""
    parser = argparse.ArgumentParser(prog='mmregnet', description=__doc__.split('\n\n')[0])
    sub = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')

    p = sub.add_parser('list', help='the presets with their complexity and stages')
    p.add_argument('--family', choices=('x', 'y'), help='only RegNetX or RegNetY')
    p.add_argument('--names', choices=NAMINGS, default='mmdet',
                   help="how to name the presets: mmdet's regnetx_1.6gf (default) or timm's "
                   'regnetx_016; every command accepts both')
    p.add_argument('--format', choices=FORMATS, default='table')
    p.set_defaults(run=_cmd_list)

    p = sub.add_parser('show', help='one arch as a backbone: stages, outputs, config')
    p.add_argument('arch', metavar='ARCH', help='a preset name or a JSON dict of arch fields')
    _add_input_options(p)
    p.add_argument('--out-indices', nargs='+', type=int, default=(0, 1, 2, 3), metavar='I',
                   help='stages whose outputs the backbone returns (default: 0 1 2 3)')
    p.set_defaults(run=_cmd_show)

    p = sub.add_parser('fit', help='search the RegNet design space for a target complexity')
    p.add_argument('--flops', type=_size, required=True, help='target flops, e.g. 1.2G, 400M')
    p.add_argument('--family', choices=('x', 'y'), default='x')
    p.add_argument('--params-max', type=_size, help='most parameters, e.g. 10M')
    p.add_argument('--acts-max', type=_size, help='most activations, e.g. 8M')
    p.add_argument('--tolerance', type=float, default=0.02, help='relative (default 0.02)')
    _add_input_options(p)
    p.add_argument('--backbone-only', action='store_true',
                   help='count without the 1000-class head (default: count it, as pycls)')
    p.add_argument('--top', type=int, default=5, help='number of results (default 5)')
    p.add_argument('--rank', choices=RANKS, default='distance',
                   help='order: distance to the target flops, or fewest acts or params')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--shapes', type=int, default=512, help='most shapes searched')
    p.add_argument('--format', choices=FORMATS, default='table')
    p.add_argument('--quiet', action='store_true', help='no progress on stderr')
    p.set_defaults(run=_cmd_fit)

    spaces = ''.join(f'  {s.name:16} {s.description}\n' for s in SPACES.values())
    p = sub.add_parser('sample', help='draw a population from a design space',
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description='Draws nets from a design space as CSV, one row per net.\n'
                       f'spaces:\n{spaces}')
    p.add_argument('--space', choices=list(SPACES), required=True, metavar='SPACE')
    p.add_argument('--n', type=int, default=500,
                   help=f'number of nets (default 500, the paper\'s; at most {MAX_NETS})')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--flops-range', nargs=2, type=_size, metavar=('LOW', 'HIGH'),
                   help='keep only nets in this range; the paper used %s %s' % tuple(
                       format_size(v) for v in PAPER_FLOPS_RANGE))
    p.add_argument('--input-size', nargs=2, type=int, metavar=('H', 'W'), default=(224, 224))
    p.add_argument('--out', required=True, help="the CSV file to write, or '-' for stdout")
    p.add_argument('--force', action='store_true', help='overwrite an existing --out')
    p.add_argument('--quiet', action='store_true', help='no progress on stderr')
    p.set_defaults(run=_cmd_sample)

    p = sub.add_parser('plot', help='the width rule of ARCH, or EDFs of populations')
    p.add_argument('arch', nargs='?', metavar='ARCH', help='a preset name or a JSON dict')
    p.add_argument('--edf', nargs='+', metavar='POPULATION', help='population CSV files')
    p.add_argument('--column', default='flops', help='the column whose EDF to plot')
    p.add_argument('--out', required=True, help='the .png (or .pdf, .svg) to write')
    p.add_argument('--force', action='store_true', help='overwrite an existing --out')
    p.set_defaults(run=_cmd_plot)

    p = sub.add_parser('detect', help='an exported detector on a point cloud file',
                       description='Runs a folder of tools/deployment/export_detector.py on a '
                       '.bin point cloud (float32 values, --dims per point) with ONNX Runtime '
                       'and prints the boxes. Needs numpy and onnxruntime only (pip install '
                       '"mmregnet[runtime]"); points holding NaN or inf are refused.')
    p.add_argument('folder', metavar='DIR', help='the exported detector')
    p.add_argument('cloud', metavar='CLOUD', help='a .bin point cloud file')
    p.add_argument('--dims', type=int, help='float32 values stored per point (nuScenes 5, '
                   "KITTI 4; default: the detector's width)")
    p.add_argument('--use-dims', type=int, help="values per point the detector reads (the "
                   "first ones; default: the detector's width)")
    p.add_argument('--out', help='write the detections here as JSON')
    p.add_argument('--png', help='draw the points and boxes from above into this PNG '
                   '(needs matplotlib)')
    p.add_argument('--force', action='store_true', help='overwrite an existing --out/--png')
    p.set_defaults(run=_cmd_detect)
    for p in sub.choices.values():
        p.add_argument('--debug', action='store_true', help='print the traceback of an error')
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs ``mmregnet``; returns the exit status.

    0 on success, 1 for an error (one line naming the input), 130 (Ctrl-C) or
    143 (SIGTERM) when interrupted, 2 for bad usage (see :mod:`mmregnet.errors`).
    """
    hide_third_party_warnings(argv)
    args = build_parser().parse_args(argv)

    def run() -> int:
        sys.stdout.write(args.run(args))
        return 0

    return run_guarded(f'mmregnet {args.command}', run, debug=args.debug,
                       known=(ValueError, TypeError, OSError))


if __name__ == '__main__':
    sys.exit(main())
