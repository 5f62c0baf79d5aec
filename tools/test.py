"""Evaluate a checkpoint with the config's test dataloader and evaluator.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out PRED.pkl]
        [--metrics-out METRICS.json] [--cfg-options KEY=VALUE ...] [--launcher ...]
        [--allow-partial] [--allow-nonfinite]

A checkpoint that does not fit the config's model is refused before anything
runs, naming the arch it holds and the one the config builds; NaN or infinite
weights likewise. Bad input exits 1 with one line. Several processes:
tools/dist_test.sh.
"""
import argparse
import sys

from mmregnet.errors import run_guarded
from mmregnet.runtime import add_common_args, load_config, test


def parse_args(argv=None) -> argparse.Namespace:
    """The command line (``argv`` or ``sys.argv``)."""
    parser = argparse.ArgumentParser(description='Evaluate a checkpoint')
    add_common_args(parser)
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='dump the raw predictions to this .pkl file')
    parser.add_argument('--metrics-out', help='write the metrics to this .json file')
    parser.add_argument('--allow-partial', action='store_true',
                        help='evaluate a checkpoint that does not fit the config\'s model '
                        '(refused by default, naming the arch it holds and the one the config '
                        'builds): only the tensors that fit are loaded')
    parser.add_argument('--allow-nonfinite', action='store_true',
                        help='evaluate weights holding NaN or infinite values (refused by default)')
    parser.add_argument('--debug', action='store_true', help='print tracebacks of errors')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Evaluates as the command line says; returns the exit status (1: bad input)."""
    args = parse_args(argv)

    def run() -> int:
        cfg = load_config(args)
        test(cfg, args.checkpoint, args.out, args.metrics_out,
             allow_partial=args.allow_partial, allow_nonfinite=args.allow_nonfinite)
        return 0
    return run_guarded('tools/test.py', run, debug=args.debug)


if __name__ == '__main__':
    sys.exit(main())
