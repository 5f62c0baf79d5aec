"""Train a detector with mmengine's Runner.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CHECKPOINT]]
        [--load-from CHECKPOINT] [--allow-partial] [--allow-nonfinite]
        [--cfg-options KEY=VALUE ...] [--launcher {none,pytorch,slurm,mpi}]

``--resume`` alone continues from the newest complete checkpoint in the work
dir (a truncated or missing one, left by a killed run, is skipped and logged
with the reason); with a path, from that checkpoint. ``--load-from`` starts a
new training from a checkpoint's weights. A checkpoint that does not fit the
config's model is refused, naming the arch it holds and the one the config
builds (``--allow-partial`` loads just the tensors that fit), and so are NaN
or infinite weights (``--allow-nonfinite``). Bad input exits 1 with one line;
an interrupt exits 130. Several processes: tools/dist_train.sh.
"""
import argparse
import sys

from mmregnet.warning_filters import hide_third_party_warnings

hide_third_party_warnings()  # before torch and OpenMMLab are imported

from mmengine.logging import print_log  # noqa: E402

from mmregnet.errors import run_guarded  # noqa: E402
from mmregnet.runtime import add_common_args, load_config, resolve_resume, train  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    """The command line (``argv`` or ``sys.argv``)."""
    parser = argparse.ArgumentParser(description='Train a detector')
    add_common_args(parser)
    parser.add_argument('--resume', nargs='?', const='auto', default=None,
                        metavar='CHECKPOINT',
                        help='resume from CHECKPOINT, or without a value from the newest '
                        'complete checkpoint in the work dir')
    parser.add_argument('--load-from', metavar='CHECKPOINT',
                        help='start from the weights of CHECKPOINT (the config\'s load_from)')
    parser.add_argument('--allow-partial', action='store_true',
                        help='load a checkpoint that does not fit the model: only the tensors '
                        'that fit (refused by default)')
    parser.add_argument('--allow-nonfinite', action='store_true',
                        help='load weights holding NaN or infinite values (refused by default)')
    parser.add_argument('--debug', action='store_true', help='print tracebacks of errors')
    args = parser.parse_args(argv)
    if args.resume is not None and args.load_from is not None:
        parser.error('--resume and --load-from exclude each other')
    return args


def main(argv=None) -> int:
    """Trains as the command line says; returns the exit status."""
    args = parse_args(argv)

    def run() -> int:
        cfg = load_config(args)
        if args.load_from is not None:
            cfg.load_from, cfg.resume = args.load_from, False
        checkpoint = resolve_resume(cfg, args.resume)
        if args.resume is not None:
            print_log(f'resuming from {checkpoint}' if checkpoint else
                      f'no complete checkpoint in {cfg.work_dir}: starting from scratch',
                      logger='current')
        train(cfg, args.allow_partial, args.allow_nonfinite)
        return 0

    return run_guarded('tools/train.py', run, debug=args.debug)


if __name__ == '__main__':
    sys.exit(main())
