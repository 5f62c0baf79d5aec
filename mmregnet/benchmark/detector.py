"""Whole PointPillars detectors from configs: build, deploy, feed point clouds, export.

The reference detector is the same config with mmdet3d's ``NoStemRegNet`` as
``pts_backbone``, loaded with the same state dict (the keys are mmdet's).
"""
import copy
import logging
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import MMLogger

from ..arch import get_arch
from ..models.deploy import fuse_conv_bn
from ..models.voxel_encoder import DeployHardVFE, unsupported_reason


def load_config(path: str) -> Config:
    """Reads a detector config and enters its default scope (``mmdet3d`` if unset).

    Args:
        path: A config file; its ``custom_imports`` are imported.

    Returns:
        The config.
    """
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(path)
    init_default_scope(cfg.get('default_scope', 'mmdet3d'))
    if 'pts_backbone' not in cfg.model:
        raise ValueError(f'{path} is not a PointPillars-style config: its model has no '
                         f'pts_backbone (keys: {sorted(cfg.model)})')
    return cfg


def reference_backbone_cfg(backbone: Dict) -> Optional[Dict]:
    """mmdet3d's ``NoStemRegNet`` config equal to a stem-less mmregnet ``RegNet`` config.

    Args:
        backbone: The ``pts_backbone`` config of type ``RegNet``/``mmregnet.RegNet``.

    Returns:
        The reference config, or None when mmdet3d has no equal (RegNetY, a stem).
    """
    if backbone.get('type') not in ('RegNet', 'mmregnet.RegNet'):
        raise ValueError(f"the detector's pts_backbone must be mmregnet's RegNet, got "
                         f"type={backbone.get('type')!r}")
    arch = get_arch(backbone['arch'])
    if arch.se_ratio or backbone.get('with_stem', True):
        return None
    in_channels = backbone.get('in_channels', 3)
    keep = ('strides', 'dilations', 'out_indices', 'frozen_stages', 'norm_cfg', 'norm_eval',
            'with_cp', 'zero_init_residual')
    return dict(type='NoStemRegNet', arch=arch.to_dict(), stem_channels=in_channels,
                base_channels=in_channels, style='pytorch',
                **{k: backbone[k] for k in keep if k in backbone})


def build_detector(cfg: Config, checkpoint: Optional[str] = None,
                   pts_backbone: Optional[Dict] = None) -> nn.Module:
    """Builds the config's detector in eval mode, on the CPU.

    Without a checkpoint the weights are the config's initialisation minus
    any pretrained backbone (nothing is downloaded).

    Args:
        cfg: A config from :func:`load_config`.
        checkpoint: Optional checkpoint file.
        pts_backbone: Replaces the config's backbone (for the reference).

    Returns:
        The detector.
    """
    from mmdet3d.registry import MODELS
    model_cfg = copy.deepcopy(cfg.model)
    if pts_backbone is not None:
        model_cfg['pts_backbone'] = pts_backbone
    model_cfg['pts_backbone'].pop('init_cfg', None)
    model_cfg['pts_backbone'].pop('_delete_', None)
    model = MODELS.build(model_cfg)
    if checkpoint:
        from mmengine.runner import load_checkpoint
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    else:
        logger = MMLogger.get_current_instance()
        level = logger.level
        logger.setLevel(logging.WARNING)  # init_weights logs every parameter at INFO
        try:
            model.init_weights()
        finally:
            logger.setLevel(level)
    model.eval()
    return model


def detector_pair(cfg: Config, checkpoint: Optional[str] = None,
                  seed: int = 0) -> Tuple[nn.Module, nn.Module]:
    """Our detector and the reference with the same weights.

    Args:
        cfg: A config with mmregnet's RegNet as ``pts_backbone``.
        checkpoint: Optional checkpoint for both.
        seed: Seed of the initial weights when there is no checkpoint. Runs
            must get the same weights to be comparable: how many boxes an
            untrained head passes to NMS, hence the detector's time, depends
            on them. The caller's random state is left as it was.

    Returns:
        ``(ours, reference)``; for a RegNetY backbone the reference is a copy of ours.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        ours = build_detector(cfg, checkpoint)
        ref_cfg = reference_backbone_cfg(dict(cfg.model.pts_backbone))
        if ref_cfg is None:
            return ours, copy.deepcopy(ours)
        ref = build_detector(cfg, pts_backbone=ref_cfg)
    ref.load_state_dict(ours.state_dict(), strict=True)
    ref.eval()
    return ours, ref


def switch_detector_to_deploy(model: nn.Module) -> nn.Module:
    """Deploys a detector in place for inference.

    The backbone is deployed (``switch_to_deploy``); the neck's and head's
    conv+BN pairs are folded and their weights moved to channels-last; a
    plain ``HardVFE`` voxel encoder is replaced by
    :class:`~mmregnet.models.voxel_encoder.DeployHardVFE`, which computes
    only the real points of each pillar (other encoders are kept).

    Args:
        model: An mmdet3d detector with ``pts_backbone`` (mmregnet's RegNet).

    Returns:
        ``model``, in eval mode.
    """
    model.eval()
    model.pts_backbone.switch_to_deploy()
    encoder = getattr(model, 'pts_voxel_encoder', None)
    if encoder is not None and not unsupported_reason(encoder):
        model.pts_voxel_encoder = DeployHardVFE(encoder)
    for name in ('pts_neck', 'pts_bbox_head'):
        part = getattr(model, name, None)
        if part is not None:
            fuse_conv_bn(part)
            part.to(memory_format=torch.channels_last)
    return model


def point_dims(cfg: Config) -> int:
    """Values per point the detector consumes: the voxel encoder's ``in_channels``."""
    return int(cfg.model.get('pts_voxel_encoder', {}).get('in_channels', 4))


def random_points(cfg: Config, num_points: int, seed: int = 0) -> torch.Tensor:
    """A point cloud spread uniformly over the config's point-cloud range.

    Args:
        cfg: The detector config (``data_preprocessor.voxel_layer.point_cloud_range``).
        num_points: Points to make.
        seed: Seed.

    Returns:
        ``(num_points, point_dims(cfg))``: x, y, z, then intensity in [0, 255]
        and, for a fifth value, a sweep time lag in [0, 0.5] s.
    """
    if num_points < 1:
        raise ValueError(f'num_points must be positive, got {num_points}')
    pc_range = torch.tensor(cfg.model.data_preprocessor.voxel_layer.point_cloud_range,
                            dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    xyz = pc_range[:3] + (pc_range[3:] - pc_range[:3]) * torch.rand(num_points, 3, generator=gen)
    extra = [torch.rand(num_points, 1, generator=gen) * 255,
             torch.rand(num_points, 1, generator=gen) * 0.5]
    dims = point_dims(cfg)
    cols = [xyz] + extra[:max(dims - 3, 0)]
    cols += [torch.zeros(num_points, 1)] * max(dims - 5, 0)
    return torch.cat(cols, 1)[:, :dims].contiguous()


def load_points(path: str, cfg: Config, load_dim: int = 5) -> torch.Tensor:
    """A real point cloud from a ``.bin`` file of float32 rows (nuScenes/Lyft layout).

    Args:
        path: The file.
        cfg: The detector config (for the values per point it consumes).
        load_dim: Values per stored point.

    Returns:
        ``(N, point_dims(cfg))``.
    """
    raw = np.fromfile(path, dtype=np.float32)
    if raw.size == 0 or raw.size % load_dim:
        raise ValueError(f'{path} holds {raw.size} float32 values, not a positive multiple '
                         f'of load_dim={load_dim}')
    dims = point_dims(cfg)
    if dims > load_dim:
        raise ValueError(f'the detector reads {dims} values per point but {path} has {load_dim}')
    return torch.from_numpy(raw.reshape(-1, load_dim)[:, :dims].copy())


def detector_inputs(points: List[torch.Tensor]) -> Dict:
    """The ``data`` dict of ``model.test_step`` for LiDAR point clouds (one per sample)."""
    from mmdet3d.structures import Det3DDataSample, LiDARInstance3DBoxes
    samples = [Det3DDataSample(metainfo=dict(box_type_3d=LiDARInstance3DBoxes, sample_idx=i))
               for i in range(len(points))]
    return dict(inputs=dict(points=points), data_samples=samples)


class DetectorNetwork(nn.Module):
    """The exportable part of PointPillars: pseudo image -> backbone -> neck -> head maps.

    Voxelization (an mmcv C++ op without an ONNX symbolic), the pillar
    encoder's scatter and the box decoding + NMS stay outside.

    Args:
        detector: An mmdet3d detector with ``pts_backbone``, ``pts_neck``,
            ``pts_bbox_head``.
    """

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.backbone = detector.pts_backbone
        self.neck = getattr(detector, 'pts_neck', None)
        self.head = detector.pts_bbox_head
        self.training = detector.training

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Maps a ``(N, C, H, W)`` pseudo image to the head's per-level maps, flattened.

        Returns:
            The head's outputs (class scores, boxes, directions) level by level,
            kind by kind, as one tuple.
        """
        feats = self.backbone(x)
        if self.neck is not None:
            feats = self.neck(feats)
        return tuple(t for kind in self.head(feats) for t in kind)
