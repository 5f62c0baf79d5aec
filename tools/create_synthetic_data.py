"""Generate a synthetic nuScenes-format (v1.0-mini) or Lyft-format (v1.01) dataset and
its mmdet3d info files (by mmdet3d's own tools/create_data.py).

    python tools/create_synthetic_data.py nuscenes --root data/synthetic/nuscenes
    python tools/create_synthetic_data.py lyft --root data/synthetic/lyft

The output is deterministic for a --seed. An existing folder generated with the
same settings is reused; any other existing folder is refused. Bad options exit 1
with one line naming the option, the rule and the value; an interrupt exits 130
(143 on SIGTERM) and leaves no staging folder.
"""
import argparse
import sys

from mmregnet.warning_filters import hide_third_party_warnings

hide_third_party_warnings()  # before torch and OpenMMLab are imported

from mmregnet.errors import run_guarded  # noqa: E402
from mmregnet.synthetic import DatasetSpec, Options, generate  # noqa: E402
from mmregnet.synthetic.generate import MAX_SCENES  # noqa: E402
from mmregnet.synthetic.options import LIMITS, MAX_RANGE  # noqa: E402

PROG = 'create_synthetic_data.py'


def _bounds(name: str) -> str:
    low, high = LIMITS[name]
    return f'{low} to {high}'


def parse_args(argv=None) -> argparse.Namespace:
    """The command line (``argv`` or ``sys.argv``)."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split('\n\n')[0])
    parser.add_argument('dataset', choices=['nuscenes', 'lyft'])
    parser.add_argument('--root', help='output folder (default: data/synthetic/<dataset>)')
    parser.add_argument('--train-scenes', type=int, default=None,
                        help='training scenes (nuScenes: up to 8, the mini_train names; '
                        f'Lyft: up to {MAX_SCENES}; default 8 for nuScenes, 6 for Lyft)')
    parser.add_argument('--val-scenes', type=int, default=2,
                        help='validation scenes (nuScenes: up to 2, the mini_val names)')
    parser.add_argument('--test-scenes', type=int, default=1,
                        help=f'Lyft v1.01-test scenes (up to {MAX_SCENES})')
    parser.add_argument('--samples-per-scene', type=int, default=20,
                        help=f'annotated key frames per scene ({_bounds("samples_per_scene")})')
    parser.add_argument('--sweeps', type=int, default=2,
                        help='nuScenes LiDAR sweeps before each key frame (real data: about 9; '
                        f'{_bounds("sweeps_per_sample")})')
    parser.add_argument('--max-sweeps', type=int, default=None,
                        help='sweeps per key frame recorded in the info files '
                        f'(default: --sweeps, 10 for Lyft; {_bounds("sweeps_per_sample")})')
    parser.add_argument('--annotation-range', type=float, default=50.0,
                        help='annotate objects within this distance (m) of the LiDAR along '
                        'x and y; set it to the detector\'s point-cloud range '
                        f'(> 0, at most {MAX_RANGE:g})')
    parser.add_argument('--objects-per-scene', type=int, default=40,
                        help='object placement attempts per scene '
                        f'({_bounds("objects_per_scene")})')
    parser.add_argument('--azimuth-steps', type=int, default=1080,
                        help='LiDAR firings per revolution and beam (fewer: smaller scans; '
                        f'{_bounds("azimuth_steps")})')
    parser.add_argument('--max-range', type=float, default=70.0,
                        help=f'LiDAR range (m; > 0, at most {MAX_RANGE:g})')
    parser.add_argument('--seed', type=int, default=0, help=f'random seed ({_bounds("seed")})')
    parser.add_argument('--no-infos', action='store_true',
                        help='write the raw dataset only, without running the converter')
    parser.add_argument('--quiet', action='store_true', help='no progress output')
    parser.add_argument('--debug', action='store_true', help='show tracebacks')
    return parser.parse_args(argv)


def spec_from_args(args: argparse.Namespace) -> DatasetSpec:
    """The dataset spec the command line asks for.

    Raises:
        mmregnet.errors.InputError: An option out of bounds (named in the message).
    """
    lyft = args.dataset == 'lyft'
    train = args.train_scenes if args.train_scenes is not None else (6 if lyft else 8)
    max_sweeps = args.max_sweeps if args.max_sweeps is not None else (10 if lyft else args.sweeps)
    options = Options(args.samples_per_scene, 0 if lyft else args.sweeps, args.annotation_range,
                      args.objects_per_scene, args.seed, args.azimuth_steps, args.max_range)
    if lyft:
        Options(sweeps_per_sample=args.sweeps)  # ignored for Lyft, but still checked
    scenes = dict(train=train, val=args.val_scenes)
    if lyft:
        scenes['test'] = args.test_scenes
    return DatasetSpec(args.dataset, options, scenes, max_sweeps)


def main(argv=None) -> int:
    """Generates as the command line says; returns the exit status (see the module doc)."""
    args = parse_args(argv)
    root = args.root or f'data/synthetic/{args.dataset}'

    def run() -> int:
        created = generate(spec_from_args(args), root, progress=not args.quiet,
                           infos=not args.no_infos)
        print(f'{"generated" if created else "reusing the identical dataset in"} {root}')
        return 0

    return run_guarded(PROG, run, args.debug)


if __name__ == '__main__':
    sys.exit(main())
