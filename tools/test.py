"""Evaluate a checkpoint with the config's test dataloader and evaluator.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out PRED.pkl]
        [--metrics-out METRICS.json] [--cfg-options KEY=VALUE ...] [--launcher ...]
        [--allow-partial] [--allow-nonfinite]
        [--backend {pytorch,onnxruntime}] [--providers NAME ...]

A checkpoint that does not fit the config's model is refused before anything
runs, naming the arch it holds and the one the config builds; NaN or infinite
weights likewise. Bad input exits 1 with one line. Several processes:
tools/dist_test.sh.

``--backend onnxruntime`` evaluates the detector as deployed: CHECKPOINT is
exported to ONNX first (or is already a folder of
tools/deployment/export_detector.py) and runs on ONNX Runtime, with the
config's own dataset and metric (one process).
"""
import argparse
import sys

from mmregnet.warning_filters import hide_third_party_warnings

hide_third_party_warnings()  # before torch and OpenMMLab are imported

from mmregnet.errors import run_guarded  # noqa: E402
from mmregnet.runtime import add_common_args, load_config, test  # noqa: E402
from mmregnet.runtime.launch import BACKENDS  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    """The command line (``argv`` or ``sys.argv``)."""
    parser = argparse.ArgumentParser(description='Evaluate a checkpoint')
    add_common_args(parser)
    parser.add_argument('checkpoint', help='checkpoint file (or, with --backend onnxruntime, '
                        'an export folder)')
    parser.add_argument('--out', help='dump the raw predictions to this .pkl file')
    parser.add_argument('--metrics-out', help='write the metrics to this .json file')
    parser.add_argument('--backend', choices=BACKENDS, default='pytorch',
                        help='pytorch (the config\'s model) or onnxruntime (the detector '
                        'exported to ONNX)')
    parser.add_argument('--providers', nargs='+', metavar='NAME',
                        help='ONNX Runtime execution providers in order of preference '
                        '(default: CUDAExecutionProvider where available, then '
                        'CPUExecutionProvider)')
    parser.add_argument('--allow-partial', action='store_true',
                        help='evaluate a checkpoint that does not fit the config\'s model '
                        '(refused by default, naming the arch it holds and the one the config '
                        'builds): only the tensors that fit are loaded')
    parser.add_argument('--allow-nonfinite', action='store_true',
                        help='evaluate weights holding NaN or infinite values (refused by default)')
    parser.add_argument('--debug', action='store_true', help='print tracebacks of errors')
    args = parser.parse_args(argv)
    if args.providers and args.backend != 'onnxruntime':
        parser.error('--providers applies to --backend onnxruntime only')
    return args


def main(argv=None) -> int:
    """Evaluates as the command line says; returns the exit status (1: bad input)."""
    args = parse_args(argv)

    def run() -> int:
        cfg = load_config(args)
        test(cfg, args.checkpoint, args.out, args.metrics_out, backend=args.backend,
             providers=args.providers, allow_partial=args.allow_partial,
             allow_nonfinite=args.allow_nonfinite)
        return 0
    return run_guarded('tools/test.py', run, debug=args.debug)


if __name__ == '__main__':
    sys.exit(main())
