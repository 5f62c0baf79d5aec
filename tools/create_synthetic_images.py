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

from mmregnet.fileio import Interrupted
from mmregnet.synthetic.images import ImageSetSpec, generate_images


def parse_args(argv=None) -> argparse.Namespace:
    """The command line (``argv`` or ``sys.argv``)."""
    defaults = ImageSetSpec()
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--root', default='data/synthetic/bars', help='output folder')
    parser.add_argument('--image-size', type=int, default=defaults.image_size,
                        help='image side in pixels')
    parser.add_argument('--train-per-class', type=int, default=defaults.train_per_class,
                        help='training images per class')
    parser.add_argument('--val-per-class', type=int, default=defaults.val_per_class,
                        help='validation images per class')
    parser.add_argument('--seed', type=int, default=defaults.seed)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Generates as the command line says; returns the exit status."""
    args = parse_args(argv)
    try:
        spec = ImageSetSpec(args.image_size, args.train_per_class, args.val_per_class,
                            args.seed)
        created = generate_images(spec, args.root)
    except (ValueError, OSError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('interrupted; nothing was written', file=sys.stderr)
        return 130
    except Interrupted as error:
        print(f'{error}; nothing was written', file=sys.stderr)
        return error.exit_status
    print(f'{"generated" if created else "reusing the identical dataset in"} {args.root}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
