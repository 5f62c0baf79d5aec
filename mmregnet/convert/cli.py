"""``regnet2mmdet SRC DST``: the command-line face of :func:`mmregnet.convert.convert_file`.

Bad input ends with one ``regnet2mmdet: error: ...`` line on stderr, exit
status 1 and no output file; an interrupt with 130 (Ctrl-C) or 143 (SIGTERM)
and no output file; 2 is left to argparse and to bugs (``unexpected ...``).
``--debug`` adds the traceback (see :mod:`mmregnet.errors`).
"""
import argparse
import sys
from typing import List, Optional

from ..arch import MAX_STRIDE, MAX_WIDTH, arch_from_text
from ..errors import run_guarded
from ..fileio import remove_stale_parts
from ..warning_filters import hide_third_party_warnings
from .layouts import LAYOUTS
from .pipeline import ConversionResult, convert_file
from .stemless import check_target

_PROG = 'regnet2mmdet'
_PREPROCESSING = {
    'BGR': "images in BGR order: data_preprocessor=dict(mean=[103.53, 116.28, 123.675], "
           "std=[57.375, 57.12, 58.395], bgr_to_rgb=False)",
    'RGB': "images in RGB order: data_preprocessor=dict(mean=[123.675, 116.28, 103.53], "
           "std=[58.395, 57.12, 57.375], bgr_to_rgb=True)",
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also documents every option)."""
    p = argparse.ArgumentParser(
        prog=_PROG, description='Convert a pycls, timm, torchvision, mmdet or mmpretrain RegNet '
        'checkpoint into mmregnet/mmdet RegNet weights ({"state_dict", "meta"}).')
    p.add_argument('src', help='source checkpoint (.pyth, .pth, .bin, .safetensors)')
    p.add_argument('dst', help='output file (written atomically; never the source)')
    p.add_argument('--src-format', choices=list(LAYOUTS),
                   help='source key layout (default: detected from the keys)')
    p.add_argument('--arch', help='preset name or JSON arch dict the weights must match '
                   '(default: inferred from the shapes)')
    p.add_argument('--keep-head', action='store_true',
                   help="keep the classifier: write mmpretrain ImageClassifier keys "
                   '(backbone.*, head.fc.*) instead of the backbone\'s (default: drop it)')
    p.add_argument('--state', choices=('auto', 'model', 'ema'), default='auto',
                   help='which weights of a checkpoint with EMA weights (default: the one '
                   'with the lower recorded error, as pycls does)')
    p.add_argument('--prefix', help="backbone prefix in a detector checkpoint, e.g. 'backbone' "
                   '(default: detected)')
    p.add_argument('--stemless', type=int, metavar='IN_CHANNELS',
                   help='fit to a stem-less backbone taking IN_CHANNELS channels '
                   f'(PointPillars: 64; 1 to {MAX_WIDTH}); adapts layer1.0, see the README')
    p.add_argument('--strides', type=int, nargs='+', metavar='S',
                   help='stage strides of the target backbone, one per stage '
                   f'(PointPillars: 1 2 2 2; each 1 to {MAX_STRIDE})')
    p.add_argument('--allow-nonfinite', action='store_true',
                   help='convert weights that hold NaN or infinite values (refused by default)')
    p.add_argument('--verify', action='store_true',
                   help='load the result strictly into RegNet and compare its stage outputs '
                   "with the source library's own network (pycls, timm, torchvision) where "
                   'that library is importable')
    p.add_argument('--verify-arch', metavar='ARCH',
                   help='verify against RegNet(ARCH) (a preset name or JSON arch dict) instead '
                   'of the inferred arch; implies --verify')
    p.add_argument('--force', action='store_true', help='replace an existing DST')
    p.add_argument('--debug', action='store_true', help='show tracebacks')
    return p


def _report(result: ConversionResult, dst: str) -> None:
    meta = result.checkpoint['meta']
    for line in result.notes:
        print(line)
    arch = result.arch.name or 'no preset has these widths; use the arch dict below'
    print(f'arch: {arch}; {result.observed.describe()}')
    if result.verify is not None:
        print(result.verify.summary())
    order = meta['source']['input_channel_order']
    if order in _PREPROCESSING and result.backbone.get('with_stem', True):
        print(f'the weights expect {_PREPROCESSING[order]}')
    print(f'wrote {dst} ({len(result.checkpoint["state_dict"])} tensors); config:')
    print(result.config_snippet(dst))


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the converter.

    Args:
        argv: Arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        0 on success, 1 for bad input, 130 (SIGINT) or 143 (SIGTERM) when
        interrupted, 2 for a usage error or an unexpected failure.
    """
    hide_third_party_warnings(argv)
    args = build_parser().parse_args(argv)

    def run() -> int:
        check_target(args.stemless, args.strides)  # before the source is read
        verify = arch_from_text(args.verify_arch) if args.verify_arch else args.verify
        for stale in remove_stale_parts(args.dst):
            print(f'removed {stale}, a temporary file left by a killed run', file=sys.stderr)
        result = convert_file(
            args.src, args.dst, force=args.force, src_format=args.src_format,
            arch=arch_from_text(args.arch) if args.arch else None, keep_head=args.keep_head,
            state=args.state, prefix=args.prefix, stemless_in_channels=args.stemless,
            strides=args.strides, verify=verify, allow_nonfinite=args.allow_nonfinite)
        _report(result, args.dst)
        return 0

    return run_guarded(_PROG, run, args.debug)


if __name__ == '__main__':
    sys.exit(main())
