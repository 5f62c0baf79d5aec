"""DeployHardVFE and PillarScatter against mmdet3d's own HardVFE and PointPillarsScatter,
in PyTorch and exported to ONNX Runtime."""
import os

import numpy as np
import pytest
import torch
from mmdet3d.models.middle_encoders import PointPillarsScatter
from mmdet3d.models.voxel_encoders import HardVFE, PillarFeatureNet

from mmregnet.deploy.pillar_encoder import DeployHardVFE, PillarScatter, unsupported_reason

NUS_400MF = os.path.join(os.path.dirname(__file__), '..', 'configs', 'regnet',
                         'pointpillars_hv_regnet-400mf_fpn_sbn-all_8xb4-2x_nus-3d.py')
RANGE = (-50, -50, -5, 50, 50, 3)


def _random_norms(vfe, seed=0):
    gen = torch.Generator().manual_seed(seed)
    for layer in vfe.vfe_layers:
        norm, c = layer.norm, layer.norm.num_features
        norm.running_mean.copy_(torch.rand(c, generator=gen) * 2 - 1)
        norm.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
        norm.weight.data.copy_(torch.rand(c, generator=gen) * 3 - 1.5)  # some negative
        norm.bias.data.copy_(torch.rand(c, generator=gen) * 2 - 1)
    return vfe.eval()


def _pillars(n=300, m=16, dims=5, seed=0, batch=1, grid=400):
    """Voxelizer-like input: 1 to m points per pillar, zero padding, some pillars full,
    each pillar in its own cell, samples in order."""
    gen = torch.Generator().manual_seed(seed)
    num_points = torch.randint(1, m + 1, (n,), generator=gen)
    num_points[:20], num_points[20:40] = m, 1
    features = torch.randn(n, m, dims, generator=gen) * 10
    features *= (torch.arange(m) < num_points.view(-1, 1)).unsqueeze(-1)
    cells = torch.randperm(grid * grid, generator=gen)[:n]
    sample = torch.arange(n) * batch // n
    coors = torch.stack([sample, torch.zeros(n, dtype=torch.long), cells // grid,
                         cells % grid], 1).int()
    return features, num_points, coors


@pytest.mark.parametrize('kwargs', [
    dict(feat_channels=[64, 64], with_cluster_center=True, with_voxel_center=True),  # nuScenes
    dict(feat_channels=[64], with_cluster_center=True, with_voxel_center=True),  # Lyft, demo
    dict(feat_channels=[32, 32, 64], with_distance=True),
    dict(feat_channels=[16]),
])
def test_equals_hard_vfe(kwargs):
    vfe = _random_norms(HardVFE(5, voxel_size=(0.25, 0.25, 8), point_cloud_range=RANGE,
                                **kwargs))
    features, num_points, coors = _pillars()
    # The same pillars as their points, grouped by pillar (the one graph's form).
    pillar, slot = (torch.arange(16) < num_points.view(-1, 1)).nonzero(as_tuple=True)
    with torch.no_grad():
        expected = vfe(features, num_points, coors)
        actual = DeployHardVFE(vfe)(features, num_points, coors)
        from_points = DeployHardVFE(vfe)(features[pillar, slot], num_points, coors,
                                         point_voxel=pillar, point_slot=slot, max_points=16)
    for got in (actual, from_points):
        assert got.shape == expected.shape
        assert (got - expected).abs().max() <= 1e-5 * expected.abs().max()


def test_unsupported_encoders_are_named_and_refused():
    pfn = PillarFeatureNet(4, [64])
    assert 'PillarFeatureNet, not a HardVFE' in unsupported_reason(pfn)
    with pytest.raises(ValueError, match='PillarFeatureNet, not a HardVFE'):
        DeployHardVFE(pfn)
    gn = HardVFE(4, [64], norm_cfg=dict(type='GN', num_groups=8))
    assert 'GroupNorm, not a BatchNorm' in unsupported_reason(gn)
    assert unsupported_reason(HardVFE(4, [64, 64])) == ''


@pytest.mark.slow
def test_deployed_detector_encodes_its_voxelized_points_as_before():
    from mmregnet.benchmark.detector import detector_inputs, detector_pair
    from mmregnet.deploy.export import random_points
    from mmregnet.deploy import switch_detector_to_deploy
    from mmregnet.deploy.configs import load_detector_config
    from detector_inputs import shrink_range
    cfg = shrink_range(load_detector_config(NUS_400MF))
    ours, ref = detector_pair(cfg)
    _random_norms(ref.pts_voxel_encoder)
    ours.load_state_dict(ref.state_dict())
    points = random_points(cfg, 4000)
    data = detector_inputs([points, points[:1500]])  # a batch of two clouds
    with torch.no_grad():
        voxels = ref.data_preprocessor(data, False)['inputs']['voxels']
        args = voxels['voxels'], voxels['num_points'], voxels['coors']
        expected = ref.pts_voxel_encoder(*args)
        switch_detector_to_deploy(ours)
        assert isinstance(ours.pts_voxel_encoder, DeployHardVFE)
        actual = ours.pts_voxel_encoder(*args)
        assert (actual - expected).abs().max() <= 1e-5 * expected.abs().max()
        boxes = ours.test_step(data)
    assert len(boxes) == 2 and len(boxes[0].pred_instances_3d.scores_3d) > 0


def _export(module, args, path, names, dynamic):
    from mmregnet.deploy.onnx_export import export_graph
    axes = {n: {0: f'n_{n}'} for n in list(dynamic) + ['out']}
    export_graph(module, args, str(path), names, ['out'], axes)
    import onnxruntime as ort
    return ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])


def test_exported_encoder_equals_hard_vfe_for_other_pillar_counts(tmp_path):
    pytest.importorskip('onnxruntime')
    vfe = _random_norms(HardVFE(4, [64, 64], with_cluster_center=True, with_voxel_center=True,
                                voxel_size=(0.25, 0.25, 8), point_cloud_range=RANGE))
    session = _export(DeployHardVFE(vfe), _pillars(n=50, m=16, dims=4), tmp_path / 'vfe.onnx',
                      ['voxels', 'num_points', 'coors'], ['voxels', 'num_points', 'coors'])
    full = list(_pillars(n=3000, m=16, dims=4, seed=9))
    full[0] = torch.randn(3000, 16, 4, generator=torch.Generator().manual_seed(2)) * 10
    full[1] = torch.full((3000,), 16)
    # Traced with 50 pillars; 48000 points in full pillars, five times.
    cases = [_pillars(n=n, m=16, dims=4, seed=n) for n in (300, 40, 1)] + [tuple(full)] * 5
    for features, num_points, coors in cases:
        with torch.no_grad():
            expected = vfe(features, num_points, coors)
        actual = session.run(None, dict(voxels=features.numpy(), num_points=num_points.numpy(),
                                        coors=coors.numpy()))[0]
        assert actual.shape == tuple(expected.shape)
        assert abs(actual - expected.numpy()).max() <= 1e-5 * expected.abs().max().item()
    # No scatter with a reduction: ONNX Runtime 1.31 runs ScatterND's on several threads
    # without guarding repeated indices, and loses updates.
    import onnx
    nodes = onnx.load(str(tmp_path / 'vfe.onnx')).graph.node
    assert not [n.name for n in nodes if n.op_type == 'ScatterND' and n.attribute]


@pytest.mark.parametrize('batch', [1, 3])
def test_scatter_equals_point_pillars_scatter_in_torch_and_onnx(batch, tmp_path):
    pytest.importorskip('onnxruntime')
    ny, nx = 24, 40
    reference = PointPillarsScatter(in_channels=8, output_shape=[ny, nx])
    scatter = PillarScatter.from_mmdet3d(reference)
    _, _, coors = _pillars(n=90, batch=batch, grid=24)
    coors[:, 3] = coors[:, 3] + (coors[:, 2] % 2) * 16  # x reaches past y's range
    feats = torch.randn(90, 8)
    expected = reference(feats, coors, batch)
    assert torch.equal(scatter(feats, coors, torch.tensor(batch)), expected)
    assert torch.equal(scatter(feats, coors, batch), expected)  # an int does as well
    session = _export(scatter, (feats[:10], coors[:10], torch.tensor(1)), tmp_path / 's.onnx',
                      ['feats', 'coors', 'batch_size'], ['feats', 'coors'])
    actual = session.run(None, dict(feats=feats.numpy(), coors=coors.numpy(),
                                    batch_size=np.array(batch)))[0]
    assert np.array_equal(actual, expected.numpy())
    with pytest.raises(ValueError, match='PointPillarsScatter only, got PillarFeatureNet'):
        PillarScatter.from_mmdet3d(PillarFeatureNet(4, [64]))
