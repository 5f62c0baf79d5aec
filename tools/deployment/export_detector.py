"""Export a PointPillars detector to ONNX: DIR/detector.onnx and DIR/detector.json.

    python tools/deployment/export_detector.py CONFIG CHECKPOINT --out DIR [--force]
        [--cfg-options KEY=VALUE ...] [--check N]
        [--int8 [--calibration-frames N] [--calibration-split {train,val}]]

DIR/detector.onnx is the whole detector as one graph of standard ONNX operators:
one point cloud (N, C) float32 in; mmdet3d's boxes (M, box_dim), scores (M,) and
labels (M,) out, with voxelization, box decoding and NMS inside and the config's
test settings frozen in. Run it with ONNX Runtime alone, in any language, or with
mmregnet.deploy.OnnxDetector(DIR). With --int8 the backbone and neck run in int8,
calibrated on clouds of the config's dataset: faster, with other boxes; evaluate
the folder with tools/test.py CONFIG DIR --backend onnxruntime.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))

from mmregnet.warning_filters import hide_third_party_warnings  # noqa: E402

hide_third_party_warnings()  # before torch and OpenMMLab are imported


def parse_args(argv=None) -> argparse.Namespace:
    """The command line (``argv`` or ``sys.argv``)."""
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='PointPillars config file')
    parser.add_argument('checkpoint', help='its checkpoint (.pth)')
    parser.add_argument('--out', required=True, help='folder to write (must not exist)')
    parser.add_argument('--force', action='store_true', help='replace an existing --out folder')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override config keys')
    parser.add_argument('--check', type=int, default=0, metavar='N',
                        help='after exporting, run the ONNX detector on a generated N-point '
                        'cloud and print its box count (default: 0, no check)')
    parser.add_argument('--int8', action='store_true',
                        help='quantize the backbone and neck to int8 (ONNX Runtime static '
                        'quantization), calibrated on clouds of the config\'s dataset')
    parser.add_argument('--calibration-frames', type=int, default=32, metavar='N',
                        help='clouds to calibrate --int8 on, spread over the split (default: 32)')
    parser.add_argument('--calibration-split', choices=('train', 'val'), default='train',
                        help='the dataset split to calibrate --int8 on (default: train)')
    parser.add_argument('--debug', action='store_true', help='print tracebacks of errors')
    args = parser.parse_args(argv)
    if args.check < 0:
        parser.error(f'--check must be >= 0, got {args.check}')
    if args.calibration_frames < 1:
        parser.error(f'--calibration-frames must be >= 1, got {args.calibration_frames}')
    return args


def main(argv=None) -> int:
    """Exports as the command line says; returns the exit status (1: bad input)."""
    args = parse_args(argv)
    from mmregnet.errors import run_guarded

    def run() -> int:
        from mmregnet.deploy import export_detector
        start = time.perf_counter()
        manifest = export_detector(args.config, args.checkpoint, args.out, force=args.force,
                                   cfg_options=args.cfg_options,
                                   int8_frames=args.calibration_frames if args.int8 else 0,
                                   calibration_split=args.calibration_split)
        print(f"exported {manifest['config_name']} ({manifest['precision']}, points to boxes, "
              f"network {manifest['network']}) to {args.out} in "
              f'{time.perf_counter() - start:.1f} s')
        if args.check:
            _check(args.out, args.check, args)
        return 0
    return run_guarded('export_detector.py', run, debug=args.debug)


def _check(folder: str, num_points: int, args: argparse.Namespace) -> None:
    """Runs the export once on a cloud spread uniformly over the config's range."""
    from mmregnet.deploy.export import random_points
    from mmregnet.deploy import OnnxDetector
    from mmregnet.deploy.configs import load_detector_config
    det = OnnxDetector(folder)
    cloud = random_points(load_detector_config(args.config, args.cfg_options), num_points)
    found = det.detect(cloud.numpy())
    print(f'check: {num_points} points -> {len(found.scores)} boxes '
          f'({det.providers[0]}, {det.precision})')


if __name__ == '__main__':
    sys.exit(main())
