"""The part of PointPillars that runs as one graph: pillars in, the head's maps out.

Voxelization (mmcv's op) comes before it and box decoding + NMS (the head's
own ``predict_by_feat``) after it, both in PyTorch, as mmdeploy does.
"""
from typing import List, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from .bn_folding import fuse_conv_bn
from .errors import DeployError
from .pillar_encoder import DeployHardVFE, PillarScatter, unsupported_reason

#: What the graph takes: the voxelizer's output and the number of samples.
INPUT_NAMES = ('voxels', 'num_points', 'coors', 'batch_size')


def switch_detector_to_deploy(model: nn.Module) -> nn.Module:
    """Deploys a PointPillars detector in place for inference in PyTorch.

    The backbone is deployed (``switch_to_deploy`` where it has one); the
    neck's and head's conv+BN pairs are folded and their weights moved to
    channels-last; a plain ``HardVFE`` voxel encoder is replaced by
    :class:`~mmregnet.deploy.pillar_encoder.DeployHardVFE`, which computes
    only the real points of each pillar (other encoders are kept).

    Args:
        model: An mmdet3d detector with ``pts_backbone``.

    Returns:
        ``model``, in eval mode.
    """
    model.eval()
    backbone = model.pts_backbone
    if hasattr(backbone, 'switch_to_deploy'):
        backbone.switch_to_deploy()
    else:
        fuse_conv_bn(backbone)
        backbone.to(memory_format=torch.channels_last)
    encoder = getattr(model, 'pts_voxel_encoder', None)
    if encoder is not None and not unsupported_reason(encoder):
        model.pts_voxel_encoder = DeployHardVFE(encoder)
    for name in ('pts_neck', 'pts_bbox_head'):
        part = getattr(model, name, None)
        if part is not None:
            fuse_conv_bn(part)
            part.to(memory_format=torch.channels_last)
    return model


def head_output_kinds(head: nn.Module) -> List[str]:
    """Names of the head's per-level outputs, in the order its ``forward`` returns them."""
    kinds = ['cls_score', 'bbox_pred']
    if getattr(head, 'use_direction_classifier', False):
        kinds.append('dir_cls_pred')
    return kinds


class DetectorGraph(nn.Module):
    """PointPillars from pillars to the head's maps: encoder, scatter, backbone, neck, head.

    Args:
        detector: An mmdet3d PointPillars detector in eval mode, deployed
            (:func:`switch_detector_to_deploy`) or not; its modules are shared,
            not copied, and a plain HardVFE is replaced by a
            :class:`~mmregnet.deploy.pillar_encoder.DeployHardVFE` copy.

    Raises:
        DeployError: An encoder or middle encoder the graph cannot hold.
    """

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        encoder = detector.pts_voxel_encoder
        if not isinstance(encoder, DeployHardVFE):
            reason = unsupported_reason(encoder)
            if reason:
                raise DeployError(f'the exported graph holds a plain HardVFE pillar encoder '
                                  f'only: {reason}')
            encoder = DeployHardVFE(encoder)
        self.encoder = encoder
        try:
            self.scatter = PillarScatter.from_mmdet3d(detector.pts_middle_encoder)
        except ValueError as e:
            raise DeployError(str(e)) from None
        self.backbone = detector.pts_backbone
        self.neck = getattr(detector, 'pts_neck', None)
        self.head = detector.pts_bbox_head
        self.kinds = head_output_kinds(self.head)

    def forward(self, voxels: Tensor, num_points: Tensor, coors: Tensor,
                batch_size: Tensor) -> Tuple[Tensor, ...]:
        """Runs the network on a batch of voxelized point clouds.

        Args:
            voxels: ``(N, M, C)`` points per pillar (zero beyond ``num_points``).
            num_points: ``(N,)`` points in each pillar.
            coors: ``(N, 4)`` pillar coordinates ``(sample, z, y, x)``.
            batch_size: 0-d integer tensor, the number of samples.

        Returns:
            The head's maps kind by kind, level by level (see :attr:`kinds`).
        """
        feats = self.encoder(voxels, num_points, coors)
        x = self.backbone(self.scatter(feats, coors, batch_size))
        if self.neck is not None:
            x = self.neck(x)
        maps = self.head(x)
        return tuple(t for kind in maps[:len(self.kinds)] for t in kind)

    def output_names(self, levels: int) -> List[str]:
        """Names of the flattened outputs for ``levels`` feature levels."""
        return [f'{kind}_{i}' for kind in self.kinds for i in range(levels)]


def split_outputs(outputs: List[Tensor], kinds: List[str]) -> List[List[Tensor]]:
    """The flat outputs back as one list per kind (the head's ``forward`` structure).

    Raises:
        DeployError: If the count is not a multiple of the kinds.
    """
    if not kinds or len(outputs) % len(kinds):
        raise DeployError(f'the graph has {len(outputs)} outputs, not a multiple of its '
                          f'{len(kinds)} output kinds {kinds}')
    levels = len(outputs) // len(kinds)
    return [list(outputs[i * levels:(i + 1) * levels]) for i in range(len(kinds))]
