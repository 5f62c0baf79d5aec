"""PointPillars' pillar encoder and scatter in an exact form that also exports to ONNX.

mmdet3d's ``HardVFE`` (the voxel encoder of the nuScenes and Lyft PointPillars
configs) runs its VFE layers on every slot of the voxelizer's ``(N, M, C)``
tensor. With ``M = 64`` slots and a few points per pillar, almost every row is
padding: on a 30k-point cloud the encoder took three quarters of a deployed
400MF detector's ``test_step``.

The padding rows are zero going in, so within a pillar they stay equal to one
another through every layer (a layer's input is the row's features and the
pillar's max). :class:`DeployHardVFE` therefore computes the real points plus
one padding row per pillar, and takes the same max: the result equals
``HardVFE``'s up to float rounding, with the BatchNorms folded into the linear
layers. It is written with operations ONNX has (``NonZero``, ``Gather``, the
max of grouped rows by :mod:`~mmregnet.deploy.grouped_rows`), so the same
module runs in PyTorch and in an exported graph.

:class:`PillarScatter` is mmdet3d's ``PointPillarsScatter`` for a batch given
as a tensor: one gather of pillar rows into the ``B * H * W`` cells instead of
a Python loop over samples, so the batch size stays a graph input.
"""
from typing import List, Optional, Tuple, Union

import torch
import torch.nn as nn
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from .bn_folding import bn_scale_shift
from .grouped_rows import Halving, halving_plan, reduce_groups
from .onnx_export import filled


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

    Returns:
        The reason, or ``''``.
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
        # A layer after the first reads each row's features beside its pillar's max: its
        # weight is kept in two halves, the max's half applied once per pillar, not per point.
        self.weights = nn.ParameterList()
        self.pillar_weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        width = None  # of a point's row entering the layer: the previous layer's output
        for layer in vfe.vfe_layers:
            weight, bias = _folded(layer.linear, layer.norm)
            width = weight.shape[1] if width is None else width
            self.weights.append(nn.Parameter(weight[:, :width].contiguous(), requires_grad=False))
            if weight.shape[1] > width:
                self.pillar_weights.append(nn.Parameter(weight[:, width:].contiguous(),
                                                        requires_grad=False))
            self.biases.append(nn.Parameter(bias, requires_grad=False))
            width = weight.shape[0]
        self.out_channels = self.weights[-1].shape[0]

    def _decorated(self, points: Tensor, voxel: Tensor, mean: Tensor, coors: Tensor) -> Tensor:
        """The real points' rows as HardVFE decorates them: point, cluster, center, distance."""
        xyz = points[:, :3]
        parts: List[Tensor] = [points]
        if self.with_cluster_center:
            parts.append(xyz - mean.index_select(0, voxel))
        if self.with_voxel_center:
            # coors are (batch, z, y, x).
            grid = coors.index_select(0, voxel).type_as(points)
            center = torch.stack([grid[:, 3 - k] * self.voxel_size[k] + self.offsets[k]
                                  for k in range(3)], dim=1)
            parts.append(xyz - center)
        if self.with_distance:
            parts.append(torch.norm(xyz, 2, 1, keepdim=True))
        return torch.cat(parts, dim=1)

    def forward(self, features: Tensor, num_points: Tensor, coors: Tensor, *args,
                point_voxel: Optional[Tensor] = None, point_slot: Optional[Tensor] = None,
                max_points: int = 0, **kwargs) -> Tensor:
        """Encodes pillars as ``HardVFE.forward`` does.

        Args:
            features: ``(N, M, C)`` points per pillar, zero beyond ``num_points``;
                with ``point_voxel``, ``(K, C)`` the pillars' points
                (:meth:`encode_points`).
            num_points: ``(N,)`` points in each pillar, at least one.
            coors: ``(N, 4)`` pillar coordinates ``(batch, z, y, x)``.
            *args: Ignored (HardVFE's image features and metas, for fusion).
            point_voxel: ``(K,)`` the pillar of each point of ``features``.
            point_slot: ``(K,)`` its place in the pillar.
            max_points: With ``point_voxel``, the voxelizer's points per pillar.
            **kwargs: Ignored, likewise.

        Returns:
            ``(N, feat_channels[-1])`` pillar features.
        """
        if point_voxel is not None:
            return self.encode_points(features, point_voxel, point_slot, num_points, coors,
                                      max_points)
        n, m, c = features.shape
        real = torch.arange(m, device=features.device) < num_points.view(-1, 1)
        # Row-major positions of the real points in (N * M): pillar = position // M.
        flat = real.reshape(n * m).nonzero().reshape(-1)
        voxel = torch.div(flat, m, rounding_mode='floor')
        plan = halving_plan(voxel, flat - voxel * m, int(m))  # M is fixed in a graph
        points = features.reshape(n * m, c).index_select(0, flat)
        mean = None
        if self.with_cluster_center:
            # As HardVFE: the sum over all slots (padding is zero) over the point count.
            # Summing whole rows then keeping x, y, z reads the slots once, without a copy.
            mean = features.sum(dim=1)[:, :3] / num_points.type_as(features).view(-1, 1)
        return self._encode(points, voxel, plan, mean, num_points < m, coors)

    def encode_points(self, points: Tensor, voxel: Tensor, slot: Tensor, num_points: Tensor,
                      coors: Tensor, max_points: int) -> Tensor:
        """Encodes pillars given as their points, as :meth:`forward` encodes them padded.

        What :class:`~mmregnet.deploy.voxelize.HardVoxelizer` assigns: no
        ``(N, max_points, C)`` tensor is made.

        Args:
            points: ``(K, C)`` the pillars' points, grouped by pillar in order.
            voxel: ``(K,)`` int64 the pillar of each point, nondecreasing.
            slot: ``(K,)`` int64 its place in the pillar, ``0 .. num_points - 1``.
            num_points: ``(N,)`` points in each pillar, at least one.
            coors: ``(N, 4)`` pillar coordinates ``(batch, z, y, x)``.
            max_points: The voxelizer's points per pillar (``M``: a pillar
                with fewer has padding, which HardVFE pools too).

        Returns:
            ``(N, feat_channels[-1])`` pillar features.
        """
        plan = halving_plan(voxel, slot, max_points)
        mean = None
        if self.with_cluster_center:
            total = reduce_groups(points[:, :3], plan, 'add')
            mean = total / num_points.type_as(points).view(-1, 1)
        return self._encode(points, voxel, plan, mean, num_points < max_points, coors)

    def _encode(self, points: Tensor, voxel: Tensor, plan: List[Halving],
                mean: Optional[Tensor], has_padding: Tensor, coors: Tensor) -> Tensor:
        """The VFE layers on the real points and one padding row per pillar, max-pooled."""
        n = has_padding.shape[0]
        has_padding = has_padding.view(-1, 1)
        rows = self._decorated(points, voxel, mean, coors)
        padding = rows.new_zeros(n, rows.shape[1])  # HardVFE masks padding to zero
        pooled = None
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            rows = torch.addmm(bias, rows, weight.t())
            padding = torch.addmm(bias, padding, weight.t())
            if pooled is not None:
                per_pillar = torch.mm(pooled, self.pillar_weights[i - 1].t())
                rows = rows + per_pillar.index_select(0, voxel)
                padding = padding + per_pillar
            rows, padding = torch.relu(rows), torch.relu(padding)
            pooled = reduce_groups(rows, plan, 'max')
            pooled = torch.where(has_padding, torch.maximum(pooled, padding), pooled)
        return pooled


class PillarScatter(nn.Module):
    """mmdet3d's ``PointPillarsScatter`` with the batch size as a tensor.

    Args:
        in_channels: Channels of the pillar features.
        output_shape: ``(ny, nx)`` of the BEV canvas, as ``PointPillarsScatter``'s.

    Example:
        >>> scatter = PillarScatter(2, (3, 4))
        >>> feats = torch.tensor([[1., 2.], [3., 4.]])
        >>> coors = torch.tensor([[0, 0, 1, 2], [1, 0, 2, 3]], dtype=torch.int32)
        >>> canvas = scatter(feats, coors, torch.tensor(2))
        >>> canvas.shape, canvas[0, :, 1, 2].tolist(), canvas[1, :, 2, 3].tolist()
        (torch.Size([2, 2, 3, 4]), [1.0, 2.0], [3.0, 4.0])
    """

    def __init__(self, in_channels: int, output_shape: Tuple[int, int]) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.ny, self.nx = (int(s) for s in output_shape)

    @classmethod
    def from_mmdet3d(cls, scatter: nn.Module) -> 'PillarScatter':
        """The equal of an mmdet3d ``PointPillarsScatter``.

        Raises:
            ValueError: If ``scatter`` is another middle encoder.
        """
        if type(scatter).__name__ != 'PointPillarsScatter':
            raise ValueError(f'PillarScatter replaces a PointPillarsScatter only, got '
                             f'{type(scatter).__name__}')
        return cls(scatter.in_channels, (scatter.ny, scatter.nx))

    def forward(self, features: Tensor, coors: Tensor, batch_size: Union[int, Tensor]) -> Tensor:
        """Scatters pillar features to the BEV canvas.

        Args:
            features: ``(N, C)`` pillar features.
            coors: ``(N, 4)`` pillar coordinates ``(batch, z, y, x)``.
            batch_size: The number of samples ``B`` (an int, or a 0-d integer tensor).

        Returns:
            ``(B, C, ny, nx)``, zero where there is no pillar (channels-last in memory).
        """
        coors = coors.long()
        cell = (coors[:, 0] * self.ny + coors[:, 2]) * self.nx + coors[:, 3]
        n = features.shape[0]
        # Each cell's row in the features, or n: a zero row appended for empty cells.
        # Gathering whole rows writes the canvas once; zeros then a scatter write it twice.
        row = filled(cell, batch_size * (self.ny * self.nx), 0) + n
        row = row.index_put((cell,), torch.arange(n, device=features.device))
        rows = torch.cat([features, features.new_zeros(1, self.in_channels)])
        canvas = rows.index_select(0, row)
        return canvas.view(batch_size, self.ny, self.nx, self.in_channels).permute(0, 3, 1, 2)
