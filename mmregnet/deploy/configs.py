"""PointPillars detector configs for deployment: read, check, fingerprint and build.

Imported by the export and the ONNX evaluation only (the light runtime reads
the manifest, never the config).
"""
import ast
import copy
import hashlib
import json
import logging
import os
from typing import Any, Dict, Optional

import torch.nn as nn
from mmdet3d.registry import MODELS
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope
from mmengine.utils import import_modules_from_strings

# Registers RegNet with mmdet3d: a config's custom_imports of an already imported
# (light) mmregnet would not.
from .. import models  # noqa: F401
from .errors import DeployError

#: Keys of a part's config that do not change what the exported network computes.
_NOT_STRUCTURAL = ('init_cfg', 'with_cp', 'frozen_stages', 'norm_eval', '_delete_', 'train_cfg',
                   'test_cfg', 'loss_cls', 'loss_bbox', 'loss_dir', 'pretrained')
#: The parts of a PointPillars model the exported graph computes, with the voxelizer
#: (which fixes the graph's points-per-pillar size).
NETWORK_PARTS = ('pts_voxel_encoder', 'pts_middle_encoder', 'pts_backbone', 'pts_neck',
                 'pts_bbox_head')


def check_pointpillars(cfg: Config, source: str) -> None:
    """Checks that ``cfg`` is a PointPillars-style detector the exporter supports.

    Args:
        cfg: A detector config.
        source: Its file (or a description), for messages.

    Raises:
        DeployError: A part is missing or of a kind the exported graph cannot hold.
    """
    model = cfg.get('model') or {}
    missing = [p for p in ('data_preprocessor',) + NETWORK_PARTS[:3] + ('pts_bbox_head',)
               if p not in model]
    if missing:
        raise DeployError(f'config {source}: not a PointPillars detector: its model has no '
                          f'{", ".join(missing)} (keys: {sorted(model)})')
    pre = model.data_preprocessor
    hard = pre.get('voxel') and pre.get('voxel_layer') and pre.get('voxel_type', 'hard') == 'hard'
    if not hard:
        raise DeployError(f'config {source}: the exported graph takes hard voxels (a '
                          "data_preprocessor with voxel=True, voxel_type='hard', a voxel_layer)")
    kinds = dict(pts_voxel_encoder='HardVFE', pts_middle_encoder='PointPillarsScatter')
    for part, kind in kinds.items():
        if model[part].get('type') != kind:
            raise DeployError(f'config {source}: model.{part} must be a {kind}, got '
                              f"type={model[part].get('type')!r}")


def load_detector_config(path: str, cfg_options: Optional[Dict[str, Any]] = None) -> Config:
    """Reads a PointPillars config, applies overrides and enters its default scope.

    Args:
        path: The config file (its ``custom_imports`` are imported).
        cfg_options: ``--cfg-options`` style overrides.

    Returns:
        The checked config.

    Raises:
        DeployError: No such file, or not a supported detector (:func:`check_pointpillars`).
    """
    if not os.path.isfile(path):
        raise DeployError(f'config {path}: no such file')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return _entered(cfg, path)


def config_from_text(text: str, source: str) -> Config:
    """The config saved in an export's manifest, scope entered.

    Args:
        text: The config as Python text (``Config.pretty_text``).
        source: Where it came from, for messages.
    """
    return _entered(Config.fromstring(text, '.py'), source)


def _entered(cfg: Config, source: str) -> Config:
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    init_default_scope(cfg.get('default_scope', 'mmdet3d'))
    check_pointpillars(cfg, source)
    return cfg


def _plain(value: Any) -> Any:
    """Config values as JSON-able plain data (tuples as lists, dict keys sorted by json)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if k not in _NOT_STRUCTURAL}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def config_text(cfg: Config) -> str:
    """The config as Python text that ``Config.fromstring(text, '.py')`` reads back.

    One ``key = value`` line per top-level key, values as Python literals
    (``Config.pretty_text`` says the same through yapf, which takes seconds).

    Raises:
        DeployError: A value that is not a plain literal (a class, a function).
    """
    lines = []
    for key, value in cfg.to_dict().items():
        text = repr(value)
        try:
            ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise DeployError(f'config key {key!r} holds a value that is not a Python literal '
                              f'({text[:80]}...); the export manifest stores the config as '
                              'text') from None
        lines.append(f'{key} = {text}')
    return '\n'.join(lines) + '\n'


def network_fingerprint(cfg: Config) -> str:
    """A hash of what the exported graph computes: the voxelizer and the network's parts.

    Data roots, schedules, losses, initialisation and decoding settings do not
    enter it, so a test config with other data or thresholds matches the graph
    of its training config.

    Args:
        cfg: A detector config.

    Returns:
        16 hex digits.
    """
    model = cfg.model
    parts = {p: model.get(p) for p in NETWORK_PARTS}
    parts['voxel_layer'] = model.data_preprocessor.voxel_layer
    text = json.dumps(_plain(parts), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_detector(cfg: Config, pts_backbone: Optional[Dict] = None,
                   init: bool = True) -> nn.Module:
    """Builds the config's detector in eval mode, on the CPU.

    The backbone's ``init_cfg`` (a pretrained checkpoint) is dropped, so
    nothing is downloaded; load weights afterwards.

    Args:
        cfg: A config from :func:`load_detector_config`.
        pts_backbone: Replaces the config's backbone (a reference detector).
        init: Apply the config's initialisation (``init_weights``); without,
            PyTorch's default one (weights about to be loaded or replaced:
            mmengine's bookkeeping of the init takes seconds on large models).

    Returns:
        The detector.
    """
    model_cfg = copy.deepcopy(cfg.model)
    if pts_backbone is not None:
        model_cfg['pts_backbone'] = pts_backbone
    model_cfg['pts_backbone'].pop('init_cfg', None)
    model_cfg['pts_backbone'].pop('_delete_', None)
    model = MODELS.build(model_cfg)
    if not init:
        return model.eval()
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # init_weights logs every parameter at INFO
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    return model.eval()


def point_dims(cfg: Config) -> int:
    """Values per point the detector consumes: the voxel encoder's ``in_channels``."""
    return int(cfg.model.pts_voxel_encoder.get('in_channels', 4))


def class_names(cfg: Config) -> list:
    """The detector's class names, from the test dataset's metainfo or ``class_names``."""
    dataset = (cfg.get('test_dataloader') or {}).get('dataset') or {}
    names = (dataset.get('metainfo') or {}).get('classes') or cfg.get('class_names')
    return list(names or [])
