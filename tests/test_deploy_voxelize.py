"""The exportable hard voxelizer against mmcv's op, for every PointPillars config's voxel settings.

Each config's own voxel layer (mmdet3d's ``VoxelizationByGridShape`` on
mmcv's CPU kernel, eval mode) is the reference; the voxelizer must give the
same voxels, point counts and coordinates, in the same order, both in PyTorch
and exported to ONNX Runtime: on a street-like cloud with points outside the
range (and NaN/inf ones), a cloud with voxels holding more than
``max_points``, one with more voxels than ``max_voxels`` as well, and an empty one.
"""
import functools
import glob
import os

import numpy as np
import pytest
import torch

pytest.importorskip('onnxruntime')

CONFIGS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), '..', 'configs', 'regnet',
                                        '*_hv_*.py')))


@functools.lru_cache(maxsize=None)
def _config(config):
    from mmregnet.deploy.configs import load_detector_config
    return load_detector_config(config)


def _reference(cfg):
    from mmdet3d.models.data_preprocessors.voxelize import VoxelizationByGridShape
    return VoxelizationByGridShape(**cfg.model.data_preprocessor.voxel_layer).eval()


class _Padded(torch.nn.Module):
    """The voxelizer's mmcv-like output (:meth:`HardVoxelizer.voxelize`) as a module."""

    def __init__(self, layout):
        super().__init__()
        from mmregnet.deploy.voxelize import HardVoxelizer
        self.voxelizer = HardVoxelizer(layout)

    def forward(self, points):
        return self.voxelizer.voxelize(points)


@functools.lru_cache(maxsize=2)
def _exported(layout, folder):
    """The voxelizer of ``layout`` in PyTorch and as an ONNX Runtime session."""
    import onnxruntime as ort

    from mmregnet.deploy.onnx_export import export_graph
    module = _Padded(layout)
    path = os.path.join(folder, f'voxelizer-{abs(hash(layout))}.onnx')
    example = torch.rand(50, 4) * 2
    export_graph(module, (example,), path, ['points'], ['voxels', 'coors', 'num_points'],
                 {'points': {0: 'n'}, 'voxels': {0: 'v'}, 'num_points': {0: 'v'},
                  'coors': {0: 'v'}})
    return module, ort.InferenceSession(path, providers=['CPUExecutionProvider']), path


def _uniform(layout, n, dims, rng):
    low, high = np.array(layout.point_cloud_range[:3]), np.array(layout.point_cloud_range[3:])
    return np.column_stack([rng.uniform(low, high, (n, 3)), rng.uniform(0, 1, (n, dims - 3))])


def clouds(layout, dims, seed=0):
    """Named ``(N, dims)`` float32 clouds for ``layout``; see the module docstring."""
    rng = np.random.default_rng(seed)
    low, high = np.array(layout.point_cloud_range[:3]), np.array(layout.point_cloud_range[3:])
    size, m = np.array(layout.voxel_size), layout.max_points
    # A street: ground over the range, dense near the sensor, and 10% of the points beyond
    # the range on each side (x, y and z), then a few non-finite ones.
    street = _uniform(layout, 6000, dims, rng)
    near = rng.normal(0, 3 * size[0], (4000, 3)).clip(low, high - size)
    near = np.column_stack([near, rng.uniform(0, 1, (4000, dims - 3))])
    outside = _uniform(layout, 1000, dims, rng)
    axis = rng.integers(0, 3, 1000)
    below = low[axis] - 0.01 - rng.random(1000)
    outside[np.arange(1000), axis] = np.where(rng.random(1000) < 0.5, below,
                                              high[axis] + rng.random(1000))
    edges = _uniform(layout, 4, dims, rng)
    edges[:2, :3] = high  # exactly on the upper bound: outside
    edges[2:, :3] = low  # exactly on the lower bound: inside
    bad = _uniform(layout, 4, dims, rng)
    bad[:, 0] = [np.nan, np.inf, -np.inf, 1e30]
    street = np.concatenate([street, near, outside, edges, bad])[rng.permutation(11008)]
    # Crowded: five voxels of 3 * max_points points, interleaved with the rest of a cloud.
    cells = rng.uniform(low, high - size, (5, 3))
    crowd = np.repeat(cells, 3 * m, axis=0) + rng.uniform(0, 0.5, (15 * m, 3)) * size
    crowd = np.column_stack([crowd, rng.uniform(0, 1, (15 * m, dims - 3))])
    crowded = np.concatenate([crowd, _uniform(layout, 2000, dims, rng)])
    crowded = crowded[rng.permutation(len(crowded))]
    # Over-full: points in more cells than max_voxels (where the grid has that many) and
    # voxels over max_points.
    nx, ny, nz = layout.grid_size
    many = min(3 * layout.max_voxels, 150000, 2 * m * nx * ny * nz)
    full = np.concatenate([crowd, _uniform(layout, many, dims, rng)])
    return dict(street=street, crowded=crowded, overfull=full, empty=np.zeros((0, dims)))


def _same(actual, expected, what):
    names = ('voxels', 'coors', 'num_points')
    for name, a, e in zip(names, actual, expected):
        a = a.numpy() if isinstance(a, torch.Tensor) else a
        e = e.numpy()
        assert a.shape == e.shape and a.dtype == e.dtype, f'{what} {name}: {a.shape} {e.shape}'
        assert np.array_equal(a, e), f'{what} {name} differ'


@pytest.mark.parametrize('config', CONFIGS, ids=lambda c: os.path.basename(c)[:-3])
def test_voxelizer_equals_mmcv_in_pytorch_and_onnxruntime(config, tmp_path_factory):
    from mmregnet.deploy.configs import point_dims
    from mmregnet.deploy.voxelize import VoxelLayout
    cfg = _config(config)
    layout = VoxelLayout.from_config(cfg.model.data_preprocessor.voxel_layer)
    reference = _reference(cfg)
    assert layout.grid_size == tuple(reference.grid_shape)
    module, session, _ = _exported(layout, str(tmp_path_factory.getbasetemp()))
    for name, cloud in clouds(layout, point_dims(cfg)).items():
        points = torch.from_numpy(cloud.astype(np.float32))
        expected = reference(points)
        if name == 'overfull':
            assert (expected[2] == layout.max_points).sum() >= 5  # voxels cut at max_points
            nx, ny, nz = layout.grid_size
            if nx * ny * nz > 2 * layout.max_voxels:  # the grid allows more voxels than kept
                assert len(expected[2]) == layout.max_voxels
        with torch.no_grad():
            _same(module(points), expected, f'{name} (PyTorch)')
        _same(session.run(None, dict(points=points.numpy())), expected, f'{name} (ONNX Runtime)')


def test_the_graph_holds_stock_operators_and_no_grid_of_cells(tmp_path):
    import onnx

    from mmregnet.deploy.onnx_export import foreign_operators
    from mmregnet.deploy.voxelize import VoxelLayout
    layout = VoxelLayout((0.25, 0.25, 8.0), (-80.0, -80.0, -5.0, 80.0, 80.0, 3.0), 20, 60000)
    _, _, path = _exported(layout, str(tmp_path))
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert foreign_operators(path) == [] and 'Unique' not in ops
    assert {'ScatterElements', 'CumSum', 'TopK'} <= ops
    # 640 x 640 cells of int64 would take 3.3 MB: the grid is made when the graph runs.
    assert os.path.getsize(path) < 100_000


def test_layout_reads_grid_shape_and_refuses_dynamic_voxelization():
    from mmregnet.deploy.errors import DeployError
    from mmregnet.deploy.voxelize import VoxelLayout
    layer = dict(point_cloud_range=[0, 0, -2, 4, 4, 2], max_num_points=5, max_voxels=(9, 7))
    layout = VoxelLayout.from_config(dict(layer, voxel_size=[0.5, 0.5, 4]))
    assert layout.grid_size == (8, 8, 1) and layout.max_voxels == 7
    shaped = VoxelLayout.from_config(dict(layer, grid_shape=[5, 5, 2]))
    assert shaped.voxel_size == (1.0, 1.0, 4.0) and shaped.grid_size == (4, 4, 1)
    with pytest.raises(DeployError, match='hard voxels .* got -1'):
        VoxelLayout.from_config(dict(layer, voxel_size=[0.5, 0.5, 4], max_num_points=-1))
    from mmregnet.deploy.voxelize import HardVoxelizer
    fine = VoxelLayout((0.01, 0.01, 8.0), (-50.0, -50.0, -5.0, 50.0, 50.0, 3.0), 5, 10)
    with pytest.raises(DeployError, match=r'\(10000, 10000, 1\) cells; .* fewer than 16777216'):
        HardVoxelizer(fine)
