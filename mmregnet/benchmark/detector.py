"""Whole PointPillars detectors for the races: the reference, its weights, the frame.

The reference detector is the same config with mmdet3d's ``NoStemRegNet`` as
``pts_backbone``, loaded with the same state dict (the keys are mmdet's).
Building, deploying and exporting are :mod:`mmregnet.deploy`'s; this module
only picks what to race and on what.
"""
import copy
import math
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
from mmengine.config import Config

from ..arch import get_arch
from ..deploy.configs import build_detector, point_dims
from ..deploy.weights import load_weights, read_checkpoint
from ..synthetic.formats import NUSCENES
from ..synthetic.lidar import LidarModel
from ..synthetic.scene import Rig, make_scene


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


def detector_pair(cfg: Config, checkpoint: Optional[str] = None, seed: int = 0,
                  init: bool = True) -> Tuple[nn.Module, nn.Module]:
    """Our detector and the reference with the same weights.

    Args:
        cfg: A config with mmregnet's RegNet as ``pts_backbone``.
        checkpoint: Optional checkpoint for both.
        seed: Seed of the initial weights when there is no checkpoint. Runs
            must get the same weights to be comparable: how many boxes an
            untrained head passes to NMS, hence the detector's time, depends
            on them. The caller's random state is left as it was.
        init: Apply the config's initialisation (see
            :func:`~mmregnet.deploy.configs.build_detector`).

    Returns:
        ``(ours, reference)``: the reference is a copy of ours with mmdet3d's
        backbone; for a RegNetY backbone, which mmdet3d lacks, a plain copy.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        ours = build_detector(cfg, init=init and not checkpoint)
        if checkpoint:
            load_weights(ours, read_checkpoint(checkpoint), checkpoint, cfg.filename)
        ref = copy.deepcopy(ours)
        ref_cfg = reference_backbone_cfg(dict(cfg.model.pts_backbone))
        if ref_cfg is not None:
            from mmdet3d.registry import MODELS  # lazy: an extra
            backbone = MODELS.build(ref_cfg)
            backbone.load_state_dict(ours.pts_backbone.state_dict(), strict=True)
            ref.pts_backbone = backbone
    return ours, ref.eval()


def lidar_frame(cfg: Config, num_points: int, seed: int = 0) -> torch.Tensor:
    """A nuScenes-like LiDAR frame: a street scene ray-cast by a 32-beam sensor.

    The scene and sensor are :mod:`mmregnet.synthetic`'s (ground, cars,
    pedestrians, facades, poles, trees; points only on visible surfaces), so
    pillars fill as on a real frame: dense near the sensor, sparse far away.
    The sensor fires as often as needed for ``num_points`` returns; the
    points kept are a random subset of exactly that many.

    Args:
        cfg: The detector config (values per point).
        num_points: Points to return.
        seed: Seed of the scene and the noise.

    Returns:
        ``(num_points, point_dims(cfg))``: x, y, z, intensity and, for a fifth
        value, the time lag of a key frame (0).
    """
    if num_points < 1:
        raise ValueError(f'num_points must be positive, got {num_points}')
    rng = np.random.default_rng(seed)
    scene = make_scene(NUSCENES.classes, rng, duration=20.0)
    steps = 1080
    while True:
        rig = Rig(lidar=LidarModel(azimuth_steps=steps))
        points = scene.scan(10.0, rig, np.random.default_rng(seed)).points
        if len(points) >= num_points:
            break
        steps = math.ceil(steps * 1.2 * num_points / max(len(points), 1))
    points = points[rng.choice(len(points), num_points, replace=False)]
    dims = point_dims(cfg)
    cols = [points[:, :4], np.zeros((num_points, max(dims - 4, 0)), np.float32)]
    return torch.from_numpy(np.concatenate(cols, 1)[:, :dims].astype(np.float32))


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
    from mmdet3d.structures import Det3DDataSample, LiDARInstance3DBoxes  # lazy: an extra
    samples = [Det3DDataSample(metainfo=dict(box_type_3d=LiDARInstance3DBoxes, sample_idx=i))
               for i in range(len(points))]
    return dict(inputs=dict(points=points), data_samples=samples)


def head_maps(model: nn.Module, data: Dict) -> Tuple[List[torch.Tensor], ...]:
    """The head's raw maps (class scores, boxes, directions) for a test batch, eagerly."""
    with torch.no_grad():
        batch = model.data_preprocessor(data, False)
        feats = model.extract_pts_feat(batch['inputs']['voxels'], batch_input_metas=[
            s.metainfo for s in batch['data_samples']])
        return model.pts_bbox_head(feats)


def calibrate_boxes(model: nn.Module, data: Dict, boxes: int = 300) -> float:
    """Shifts the class-score bias so that ``boxes`` anchors pass the score threshold.

    An untrained head scores every anchor near its prior (0.01), below the
    configs' threshold (0.05), so nothing would reach NMS and the decode stage
    would time nothing. After this, the ``boxes`` best-scoring anchors of this
    frame pass: about as many as a trained detector sends to NMS.

    Args:
        model: The detector (its head's ``conv_cls.bias`` is changed in place).
        data: The test batch it will be timed on.
        boxes: Anchors to pass (the head's ``nms_pre`` caps what NMS sees).

    Returns:
        The shift added to the bias (0 for a threshold of 0, which every anchor
        passes: the head's ``nms_pre`` alone then decides).
    """
    head = model.pts_bbox_head
    thr = float(head.test_cfg.get('score_thr', 0.0)) if head.test_cfg else 0.0
    if thr <= 0 or not getattr(head, 'use_sigmoid_cls', True):
        return 0.0
    best = torch.cat([s.amax(1) for s in anchor_scores(head, head_maps(model, data)[0])])
    top = best.topk(min(boxes + 1, best.numel())).values
    cut = float(top[-2:].mean()) if len(top) > 1 else float(top[0])
    target = math.log(thr / (1 - thr))
    shift = target - cut
    with torch.no_grad():  # Anchor3DHead has one conv_cls, ShapeAwareHead one per group
        for name, conv in head.named_modules():
            if name.split('.')[-1] == 'conv_cls':
                conv.bias += shift
    return shift


def anchor_scores(head: nn.Module, cls_scores: List[torch.Tensor]) -> List[torch.Tensor]:
    """Each level's class logits as ``(anchors, classes)``.

    Anchor3DHead's maps are ``(B, A * C, H, W)``; ShapeAwareHead's (SSN)
    already ``(B, anchors, C)``.
    """
    classes = head.num_classes
    return [(s.permute(0, 2, 3, 1) if s.dim() == 4 else s).reshape(-1, classes)
            for s in cls_scores]
