"""Deployment of RegNet backbones and whole PointPillars-RegNet detectors.

- PyTorch: :func:`switch_to_deploy` (a RegNet with BatchNorms folded, channels-last)
  and :func:`switch_detector_to_deploy` (a whole detector, with the exact
  real-points-only :class:`DeployHardVFE` pillar encoder).
- ONNX: :func:`export_onnx` / :func:`trace` for a backbone;
  :func:`export_detector` for a whole detector as one graph from points to
  mmdet3d's boxes (``tools/deployment/export_detector.py``), its voxelization
  :class:`HardVoxelizer` and its box decoding :class:`BoxDecoder`; ``--int8``
  quantizes its backbone and neck (:mod:`mmregnet.deploy.quantize`).
- Runtime: :class:`OnnxDetector` runs an exported folder on ONNX Runtime with
  numpy and onnxruntime only, giving :class:`Detections`.

The names are imported on first use, so ``import mmregnet.deploy`` loads
neither mmdet3d nor onnxruntime, and ``from mmregnet.deploy import
OnnxDetector`` loads no torch.
"""
import importlib
from typing import Any

_NAMES = {
    'bn_scale_shift': '.bn_folding', 'fuse_conv_bn': '.bn_folding',
    'fold_bn': '..models.fusion', 'switch_to_deploy': '..models.fusion',
    'export_graph': '.onnx_export', 'export_onnx': '.onnx_export', 'trace': '.onnx_export',
    'DeployHardVFE': '.pillar_encoder', 'PillarScatter': '.pillar_encoder',
    'DetectorGraph': '.detector_graph', 'switch_detector_to_deploy': '.detector_graph',
    'DeployError': '.errors',
    'export_detector': '.export', 'export_model': '.export',
    'OnnxDetector': '.runtime',
    'Detections': '.runtime',
    'BoxDecoder': '.box_decoding',
    'HardVoxelizer': '.voxelize', 'VoxelLayout': '.voxelize',
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    value = getattr(importlib.import_module(_NAMES[name], __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_NAMES))
