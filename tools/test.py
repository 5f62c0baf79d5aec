"""Evaluate a checkpoint with the config's test dataloader and evaluator.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out PRED.pkl]
        [--metrics-out METRICS.json] [--cfg-options KEY=VALUE ...] [--launcher ...]

Several processes: tools/dist_test.sh.
"""
import argparse

from mmregnet.runtime import add_common_args, load_config, test


def parse_args(argv=None) -> argparse.Namespace:
    """The command line (``argv`` or ``sys.argv``)."""
    parser = argparse.ArgumentParser(description='Evaluate a checkpoint')
    add_common_args(parser)
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='dump the raw predictions to this .pkl file')
    parser.add_argument('--metrics-out', help='write the metrics to this .json file')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    """Evaluates as the command line says."""
    args = parse_args(argv)
    cfg = load_config(args)
    test(cfg, args.checkpoint, args.out, args.metrics_out)


if __name__ == '__main__':
    main()
