"""An exact HardVFE for inference that computes only the real points of each pillar.

mmdet3d's ``HardVFE`` (the voxel encoder of the nuScenes and Lyft PointPillars
configs) runs its VFE layers on every slot of the voxelizer's ``(N, M, C)``
tensor. With ``M = 64`` slots and a few points per pillar, almost every row is
padding: on a 30k-point cloud the encoder took three quarters of a deployed
400MF detector's ``test_step``.

The padding rows are zero going in, so within a pillar they stay equal to one
another through every layer (a layer's input is the row's features and the
pillar's max). :class:`DeployHardVFE` therefore computes the real points plus
one padding row per pillar that has padding, and takes the same max: the
result equals ``HardVFE``'s up to float rounding, with the BatchNorms folded
into the linear layers.
"""
from typing import List, Tuple

import torch
import torch.nn as nn
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from .deploy import bn_scale_shift


def _folded(linear: nn.Linear, norm: _BatchNorm) -> Tuple[Tensor, Tensor]:
    """``(weight, bias)`` of ``norm(linear(x))`` for a norm in eval mode (float64 fold)."""
    scale, shift = bn_scale_shift(norm)
    if linear.bias is not None:
        shift = shift + linear.bias.double() * scale
    dtype = linear.weight.dtype
    return (linear.weight.double() * scale[:, None]).to(dtype), shift.to(dtype)


def unsupported_reason(vfe: nn.Module) -> str:
    """Why :class:`DeployHardVFE` cannot replace ``vfe`` (empty if it can).

    Args:
        vfe: A voxel encoder.
    """
    if type(vfe).__name__ != 'HardVFE':
        return f'it is a {type(vfe).__name__}, not a HardVFE'
    if vfe.fusion_layer is not None:
        return 'it fuses image features'
    layers = list(vfe.vfe_layers)
    for i, layer in enumerate(layers):
        last = i == len(layers) - 1
        if not layer.max_out or layer.cat_max == last:
            return f'VFE layer {i} does not max-pool as HardVFE builds it'
        if not isinstance(layer.norm, _BatchNorm) or not layer.norm.track_running_stats:
            return f'VFE layer {i} has a {type(layer.norm).__name__}, not a BatchNorm with ' \
                   'running statistics'
    return ''


class DeployHardVFE(nn.Module):
    """mmdet3d's ``HardVFE`` in eval mode, computed on real points only.

    Args:
        vfe: The ``HardVFE`` to copy (its weights are folded, not shared).

    Raises:
        ValueError: If ``vfe`` is not a plain HardVFE (:func:`unsupported_reason`).

    Example:
        >>> from mmdet3d.models.voxel_encoders import HardVFE
        >>> vfe = HardVFE(4, [64, 64], with_cluster_center=True, with_voxel_center=True).eval()
        >>> features = torch.zeros(3, 8, 4)
        >>> features[:, :2] = torch.rand(3, 2, 4)  # two points in each of 3 pillars
        >>> num_points = torch.tensor([2, 2, 2])
        >>> coors = torch.tensor([[0, 0, 1, 2], [0, 0, 3, 4], [0, 0, 5, 6]], dtype=torch.int32)
        >>> DeployHardVFE(vfe)(features, num_points, coors).shape
        torch.Size([3, 64])
    """

    def __init__(self, vfe: nn.Module) -> None:
        super().__init__()
        reason = unsupported_reason(vfe)
        if reason:
            raise ValueError(f'DeployHardVFE replaces a plain HardVFE only: {reason}')
        self.with_cluster_center = vfe._with_cluster_center
        self.with_voxel_center = vfe._with_voxel_center
        self.with_distance = vfe._with_distance
        self.voxel_size = (vfe.vx, vfe.vy, vfe.vz)
        self.offsets = (vfe.x_offset, vfe.y_offset, vfe.z_offset)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for layer in vfe.vfe_layers:
            weight, bias = _folded(layer.linear, layer.norm)
            self.weights.append(nn.Parameter(weight, requires_grad=False))
            self.biases.append(nn.Parameter(bias, requires_grad=False))

    def _decorated(self, features: Tensor, num_points: Tensor, coors: Tensor,
                   voxel: Tensor, slot: Tensor) -> Tensor:
        """The real points' rows as HardVFE decorates them: point, cluster, center, distance."""
        points = features[voxel, slot]
        xyz = points[:, :3]
        parts: List[Tensor] = [points]
        if self.with_cluster_center:
            # As HardVFE: the sum over all slots (padding is zero) over the point count.
            mean = features[:, :, :3].sum(dim=1) / num_points.type_as(features).view(-1, 1)
            parts.append(xyz - mean[voxel])
        if self.with_voxel_center:
            # coors are (batch, z, y, x).
            grid = coors[:, [3, 2, 1]].type_as(features)
            center = torch.stack([grid[:, k] * self.voxel_size[k] + self.offsets[k]
                                  for k in range(3)], dim=1)
            parts.append(xyz - center[voxel])
        if self.with_distance:
            parts.append(torch.norm(xyz, 2, 1, keepdim=True))
        return torch.cat(parts, dim=1)

    def forward(self, features: Tensor, num_points: Tensor, coors: Tensor,
                *args, **kwargs) -> Tensor:
        """Encodes pillars as ``HardVFE.forward`` does.

        Args:
            features: ``(N, M, C)`` points per pillar, zero beyond ``num_points``.
            num_points: ``(N,)`` points in each pillar.
            coors: ``(N, 4)`` pillar coordinates ``(batch, z, y, x)``.
            *args: Ignored (HardVFE's image features and metas, for fusion).
            **kwargs: Ignored, likewise.

        Returns:
            ``(N, feat_channels[-1])`` pillar features.
        """
        n, m = features.shape[:2]
        real = torch.arange(m, device=features.device) < num_points.view(-1, 1)
        voxel, slot = real.nonzero(as_tuple=True)
        has_padding = (num_points < m).view(-1, 1)
        rows = self._decorated(features, num_points, coors, voxel, slot)
        padding = rows.new_zeros(n, rows.shape[1])  # HardVFE masks padding to zero
        last = len(self.weights) - 1
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            rows = torch.relu(torch.addmm(bias, rows, weight.t()))
            padding = torch.relu(torch.addmm(bias, padding, weight.t()))
            # ReLU outputs are >= 0, so 0 is a neutral start for the max.
            pooled = rows.new_zeros(n, rows.shape[1]).scatter_reduce_(
                0, voxel.view(-1, 1).expand_as(rows), rows, 'amax', include_self=True)
            pooled = torch.where(has_padding, torch.maximum(pooled, padding), pooled)
            if i < last:  # the next layer also sees each pillar's max
                rows = torch.cat([rows, pooled[voxel]], dim=1)
                padding = torch.cat([padding, pooled], dim=1)
        return pooled
