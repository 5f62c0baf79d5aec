"""Train a detector with mmengine's Runner.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CHECKPOINT]]
        [--cfg-options KEY=VALUE ...] [--launcher {none,pytorch,slurm,mpi}]

``--resume`` alone continues from the newest complete checkpoint in the work
dir (a truncated or missing one, left by a killed run, is skipped); with a
path, from that checkpoint. Several processes: tools/dist_train.sh.
"""
import argparse

from mmengine.logging import print_log

from mmregnet.runtime import add_common_args, load_config, resolve_resume, train


def parse_args(argv=None) -> argparse.Namespace:
    """The command line (``argv`` or ``sys.argv``)."""
    parser = argparse.ArgumentParser(description='Train a detector')
    add_common_args(parser)
    parser.add_argument('--resume', nargs='?', const='auto', default=None,
                        metavar='CHECKPOINT',
                        help='resume from CHECKPOINT, or without a value from the newest '
                        'complete checkpoint in the work dir')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    """Trains as the command line says."""
    args = parse_args(argv)
    cfg = load_config(args)
    checkpoint = resolve_resume(cfg, args.resume)
    if args.resume is not None:
        print_log(f'resuming from {checkpoint}' if checkpoint else
                  f'no complete checkpoint in {cfg.work_dir}: starting from scratch',
                  logger='current')
    train(cfg)


if __name__ == '__main__':
    main()
