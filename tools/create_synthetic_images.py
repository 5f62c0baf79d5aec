"""Generate a small image-classification dataset (coloured bars) in ImageFolder format.

    python tools/create_synthetic_images.py --root data/synthetic/bars

It writes ``ROOT/{train,val}/{bar000,bar045,bar090,bar135}/*.png``: one bar of
random colour, size and position per image, the class being its orientation.
mmpretrain's ``CustomDataset`` reads this layout, for
``configs/classification/regnetx-tiny_1xb32-6e_bars.py``. The output is
deterministic for the options. An existing folder generated with the same
options is reused; any other existing path is refused.
"""
import argparse
import sys

from mmregnet.warning_filters import hide_third_party_warnings

hide_third_party_warnings()  # before torch and OpenMMLab are imported

from mmregnet.errors import run_guarded  # noqa: E402
from mmregnet.synthetic.images import ImageSetSpec, generate_images  # noqa: E402

PROG = 'create_synthetic_images.py'


def parse_args(argv=None) -> argparse.Namespace:
    """The command line (``argv`` or ``sys.argv``)."""
    defaults = ImageSetSpec()
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split('\n\n')[0])
    parser.add_argument('--root', default='data/synthetic/bars', help='output folder')
    parser.add_argument('--image-size', type=int, default=defaults.image_size,
                        help='image side in pixels')
    parser.add_argument('--train-per-class', type=int, default=defaults.train_per_class,
                        help='training images per class')
    parser.add_argument('--val-per-class', type=int, default=defaults.val_per_class,
                        help='validation images per class')
    parser.add_argument('--seed', type=int, default=defaults.seed)
    parser.add_argument('--debug', action='store_true', help='print tracebacks of errors')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Generates as the command line says; returns the exit status (1: bad input)."""
    args = parse_args(argv)

    def run() -> int:
        spec = ImageSetSpec(args.image_size, args.train_per_class, args.val_per_class,
                            args.seed)
        created = generate_images(spec, args.root)
        print(f'{"generated" if created else "reusing the identical dataset in"} {args.root}')
        return 0

    return run_guarded(PROG, run, args.debug)


if __name__ == '__main__':
    sys.exit(main())
