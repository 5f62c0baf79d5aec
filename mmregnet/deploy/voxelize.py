"""mmcv's hard voxelization as a torch module that exports to stock ONNX operators.

:class:`HardVoxelizer` gives, for one point cloud, what mmcv 2.1's CPU kernel
(``mmcv.ops.Voxelization`` in eval mode, the voxel layer of mmdet3d's
``Det3DDataPreprocessor``) gives: a point's cell is
``floor((p - range_min) / voxel_size)`` in float32, points outside the grid
(NaN and inf ones too) are dropped, voxels are numbered in the order of their
first point, a voxel keeps its first ``max_points`` points and only the first
``max_voxels`` voxels are kept.

The first point of each cell is a ``ScatterElements`` with a ``min``
reduction of point indices over a dense grid of cells (one int64 per cell),
voxel numbers are a ``CumSum`` of first-point flags, point counts a
``ScatterElements`` ``add``; one ``TopK`` then orders the points by voxel,
which ranks them in their voxels and groups them for the pillar encoder.
``Unique`` (about ten times slower in ONNX Runtime) is not used, nor
``ScatterND`` with a reduction (ONNX Runtime 1.31 runs it on several threads
without guarding repeated indices: it loses updates).

A :class:`HardVoxelizer` gives the kept points and their voxels, what the
pillar encoder reads (:class:`~mmregnet.deploy.pillar_encoder.DeployHardVFE`);
its :meth:`~HardVoxelizer.voxelize` also lays them out as mmcv's zero-padded
``(V, max_points, C)`` tensor.

Example:
    >>> layout = VoxelLayout((1.0, 1.0, 4.0), (0.0, 0.0, -2.0, 4.0, 4.0, 2.0), 2, 10)
    >>> points = torch.tensor([[0.5, 0.5, 0.0, 1.0], [3.5, 0.5, 0.0, 2.0],
    ...                        [0.2, 0.9, 0.0, 3.0], [0.1, 0.1, 0.0, 4.0],
    ...                        [9.0, 0.5, 0.0, 5.0]])
    >>> voxels, coors, num_points = HardVoxelizer(layout).voxelize(points)
    >>> num_points.tolist(), coors.tolist(), voxels[0, :, 3].tolist()
    ([2, 1], [[0, 0, 0], [0, 0, 3]], [1.0, 3.0])
"""
import math
from typing import Any, Dict, NamedTuple, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from .errors import DeployError
from .onnx_export import filled


#: Cells of a grid the graph numbers (exactly, in float32), and a grid of int64 holds.
MAX_CELLS = 2 ** 24


class VoxelLayout(NamedTuple):
    """The settings of a hard voxelizer at test time.

    Attributes:
        voxel_size: ``(x, y, z)`` edge lengths.
        point_cloud_range: ``(x0, y0, z0, x1, y1, z1)``.
        max_points: Points kept per voxel.
        max_voxels: Voxels kept per cloud.
    """

    voxel_size: Tuple[float, float, float]
    point_cloud_range: Tuple[float, float, float, float, float, float]
    max_points: int
    max_voxels: int

    @classmethod
    def from_config(cls, voxel_layer: Dict[str, Any]) -> 'VoxelLayout':
        """The layout of a ``data_preprocessor.voxel_layer`` config in eval mode.

        As mmdet3d's ``VoxelizationByGridShape``: a ``grid_shape`` instead of a
        ``voxel_size`` gives ``range / (grid_shape - 1)``; a ``max_voxels`` pair
        is ``(training, testing)``.

        Raises:
            DeployError: Dynamic voxelization (``-1`` limits) or no voxel size.
        """
        layer = dict(voxel_layer)
        pc_range = np.asarray(layer['point_cloud_range'], np.float32)
        if layer.get('voxel_size'):
            size = np.asarray(layer['voxel_size'], np.float32)
        elif layer.get('grid_shape'):
            grid = np.asarray(layer['grid_shape'], np.float32)
            size = (pc_range[3:] - pc_range[:3]) / (grid - np.float32(1))
        else:
            raise DeployError(f'voxel_layer {layer}: expected a voxel_size or a grid_shape')
        max_voxels = layer.get('max_voxels', 20000)
        if isinstance(max_voxels, Sequence):
            max_voxels = max_voxels[1]
        max_points = int(layer['max_num_points'])
        if max_points < 1 or int(max_voxels) < 1:
            raise DeployError(f'voxel_layer: the exported graph takes hard voxels (max_num_points '
                              f'and max_voxels >= 1), got {max_points} and {max_voxels}')
        return cls(tuple(float(v) for v in size), tuple(float(v) for v in pc_range),
                   max_points, int(max_voxels))

    @property
    def grid_size(self) -> Tuple[int, int, int]:
        """Cells along x, y, z: ``round(range / voxel_size)`` in float32, as mmcv's kernel."""
        pc_range = np.asarray(self.point_cloud_range, np.float32)
        cells = (pc_range[3:] - pc_range[:3]) / np.asarray(self.voxel_size, np.float32)
        return tuple(int(math.floor(float(c) + 0.5)) for c in cells)  # C's round: half up

    def to_dict(self) -> Dict[str, Any]:
        """The layout as JSON-able data (a manifest's ``voxelizer``)."""
        return dict(voxel_size=list(self.voxel_size),
                    point_cloud_range=list(self.point_cloud_range),
                    max_num_points=self.max_points, max_voxels=self.max_voxels,
                    grid_size=list(self.grid_size))


class Assignment(NamedTuple):
    """Kept points of one cloud and their voxels.

    Attributes:
        point: ``(K,)`` int64 row in the cloud of each kept point, by voxel,
            then as in the cloud: voxel ``v``'s ``num_points[v]`` points
            follow voxel ``v - 1``'s.
        voxel: ``(K,)`` int64 its voxel, in ``[0, V)``, nondecreasing.
        slot: ``(K,)`` int64 its place in its voxel, ``0 .. num_points - 1``.
        num_points: ``(V,)`` int32 points kept in each voxel.
        coors: ``(V, 3)`` int32 voxel coordinates ``(z, y, x)``.
        cell: ``(V,)`` int64 the voxel's cell ``(z * ny + y) * nx + x``.
    """

    point: Tensor
    voxel: Tensor
    slot: Tensor
    num_points: Tensor
    coors: Tensor
    cell: Tensor


class _Scatter1d(torch.autograd.Function):
    """``base`` with ``src`` reduced into the entries ``index`` (1-D): one ``ScatterElements``.

    torch.onnx exports ``scatter_reduce`` with an ``If`` around it for 0-d
    inputs; this is the bare operator.
    """

    @staticmethod
    def forward(ctx, base: Tensor, index: Tensor, src: Tensor, reduction: str) -> Tensor:
        return base.scatter_reduce(0, index, src, dict(min='amin', add='sum')[reduction])

    @staticmethod
    def symbolic(g, base, index, src, reduction):
        return g.op('ScatterElements', base, index, src, axis_i=0, reduction_s=reduction)


class HardVoxelizer(nn.Module):
    """mmcv's hard voxelization of one point cloud, exportable to ONNX.

    Args:
        layout: The voxelizer's settings (:meth:`VoxelLayout.from_config`).
    """

    def __init__(self, layout: VoxelLayout) -> None:
        super().__init__()
        self.layout = layout
        self.nx, self.ny, self.nz = layout.grid_size
        self.num_cells = self.nx * self.ny * self.nz
        if min(self.nx, self.ny, self.nz) < 1 or self.num_cells >= MAX_CELLS:
            raise DeployError(f'voxel layout {layout}: the grid has {self.grid_size} cells; '
                              f'expected at least 1 along each axis and fewer than {MAX_CELLS} '
                              'in all')
        column = dict(dtype=torch.float32)
        self.register_buffer('low', torch.tensor(layout.point_cloud_range[:3], **column)
                             .view(3, 1), persistent=False)
        self.register_buffer('size', torch.tensor(layout.voxel_size, **column).view(3, 1),
                             persistent=False)
        self.register_buffer('cells', torch.tensor(self.grid_size, **column).view(3, 1),
                             persistent=False)

    @property
    def grid_size(self) -> Tuple[int, int, int]:
        """Cells along x, y, z."""
        return self.nx, self.ny, self.nz

    def forward(self, points: Tensor) -> Assignment:
        """The kept points by voxel, voxels numbered as mmcv numbers them.

        Args:
            points: ``(N, C)`` float32, x, y, z first.

        Returns:
            The :class:`Assignment`.
        """
        m, max_voxels = self.layout.max_points, self.layout.max_voxels
        # Coordinates as rows: element-wise operators then run along N, not along 3.
        grid = torch.floor((points[:, :3].t() - self.low) / self.size)
        inside = ((grid >= 0) & (grid < self.cells)).all(dim=0)  # False for NaN and inf too
        # Cell numbers are exact in float32 below 2 ** 24; outside points go to one past the grid.
        outside = float(self.num_cells)
        cell = torch.where(inside, (grid[2] * self.ny + grid[1]) * self.nx + grid[0],
                           torch.full_like(grid[0], outside)).long()
        pos = torch.arange(points.shape[0], device=points.device)
        first = _Scatter1d.apply(filled(pos, self.num_cells + 1, 2 ** 62), cell, pos, 'min')
        first = first.index_select(0, cell)  # each point's cell's first point
        is_first = (first == pos) & inside
        voxel = (torch.cumsum(is_first.long(), 0) - 1).index_select(0, first)
        count = _Scatter1d.apply(filled(pos, self.num_cells + 1, 0), cell, torch.ones_like(pos),
                                 'add')
        firsts = is_first.nonzero()[:, 0][:max_voxels]  # voxel v's first point: firsts[v]
        cells = cell.index_select(0, firsts)
        count = count.index_select(0, cells)
        # The points of kept voxels by voxel, then by index (distinct keys: TopK's order is
        # exact); a point's rank in its voxel is its position less its voxel's start.
        candidate = (inside & (voxel < max_voxels)).nonzero()[:, 0]
        k = candidate.shape[0]
        voxel = voxel.index_select(0, candidate)
        order = torch.topk(voxel * (k + 1) + torch.arange(k, device=points.device), k,
                           largest=False).indices
        voxel = voxel.index_select(0, order)
        slot = torch.arange(k, device=points.device) - (
            torch.cumsum(count, 0) - count).index_select(0, voxel)
        kept = (slot < m).nonzero()[:, 0]
        xy = self.nx * self.ny
        coors = torch.stack([cells // xy, cells % xy // self.nx, cells % self.nx], dim=1)
        return Assignment(point=candidate.index_select(0, order.index_select(0, kept)),
                          voxel=voxel.index_select(0, kept), slot=slot.index_select(0, kept),
                          num_points=count.clamp(max=m).int(), coors=coors.int(), cell=cells)

    def voxelize(self, points: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Voxelizes one cloud as ``mmcv.ops.Voxelization`` does in eval mode.

        Args:
            points: ``(N, C)`` float32, x, y, z first.

        Returns:
            As mmcv's op: ``voxels`` ``(V, max_points, C)`` (zero beyond each
            voxel's points), ``coors`` ``(V, 3)`` int32 ``(z, y, x)`` and
            ``num_points`` ``(V,)`` int32.
        """
        a = self(points)
        m, v, c = self.layout.max_points, a.num_points.shape[0], points.shape[1]
        voxels = points.new_zeros((v * m, c)).index_put((a.voxel * m + a.slot,),
                                                        points.index_select(0, a.point))
        return voxels.view(v, m, c), a.coors, a.num_points
