"""The whole detector on ONNX Runtime against mmdet3d's eager detector, for every config.

For each PointPillars config under configs/regnet (nuScenes and Lyft, FPN and
SECOND-FPN, RegNetX and RegNetY, the anchor, FreeAnchor and SSN heads): the
same weights (random, with random BatchNorm statistics, and a class bias that
sends boxes to NMS) in mmdet3d's
eager detector (with mmdet3d's NoStemRegNet where it has one) and in the
exported graph run by OnnxDetector give the same boxes, scores and labels.
The point-cloud range is cut to a 32 x 32 canvas (tests/detector_inputs.py):
the network is the config's, only the pseudo image is smaller.
"""
import glob
import os

import pytest
import torch

from detector_inputs import point_cloud_batch, shrink_range

pytestmark = pytest.mark.slow  # exports every detector config and compares it with mmdet3d

pytest.importorskip('onnxruntime')

# Every hard-voxel PointPillars detector: PointPillars' own head and SSN's shape-aware one.
CONFIGS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), '..', 'configs', 'regnet',
                                        '*_hv_*.py')))
NUS_400MF = [c for c in CONFIGS if c.endswith('regnet-400mf_fpn_sbn-all_8xb4-2x_nus-3d.py')][0]
RTOL = 1e-4


def _setup(config, tmp_path, boxes=150):
    """Reference detector, the export folder of the same weights, and a generated cloud."""
    from norms import randomize_norms
    from mmregnet.benchmark.detector import calibrate_boxes, detector_inputs, detector_pair
    from mmregnet.deploy.configs import load_detector_config
    from mmregnet.deploy.export import export_model
    cfg = shrink_range(load_detector_config(config))
    ours, ref = detector_pair(cfg, init=False)  # PyTorch's init, then random norms
    randomize_norms(ours, seed=3)
    points = point_cloud_batch(cfg, seed=1)['inputs']['points'][0]
    calibrate_boxes(ours, detector_inputs([points]), boxes)
    ref.load_state_dict(ours.state_dict(), strict=True)
    folder = str(tmp_path / 'onnx')
    export_model(ours, cfg, folder, config_path=config)
    return cfg, ref, folder, points


@pytest.fixture(scope='module')
def nus(tmp_path_factory):
    """The nuScenes 400MF FPN detector exported once for the batch, manifest and empty tests."""
    return _setup(NUS_400MF, tmp_path_factory.mktemp('nus'))


def _assert_same_predictions(expected, actual):
    """Same count; each expected box has an actual one of its label within RTOL.

    Boxes are paired one to one, best score first, with the nearest unpaired
    box: random weights score many anchors of empty canvas alike, so the
    order of equal scores says nothing.
    """
    e, a = expected.pred_instances_3d, actual.pred_instances_3d
    assert len(a.scores_3d) == len(e.scores_3d) > 0
    assert type(a.bboxes_3d) is type(e.bboxes_3d)
    want, got = e.bboxes_3d.tensor, a.bboxes_3d.tensor
    tol_box = RTOL * want.abs().max().item()
    tol_score = RTOL * e.scores_3d.abs().max().item()
    labels, scores = a.labels_3d.tolist(), a.scores_3d.tolist()
    unpaired = set(range(len(got)))
    for i in e.scores_3d.argsort(descending=True).tolist():
        label, score = int(e.labels_3d[i]), float(e.scores_3d[i])
        near = [j for j in unpaired if labels[j] == label and abs(scores[j] - score) <= tol_score]
        assert near, f'no box of label {label} scores {score}'
        dist = (got[near] - want[i]).abs().max(1).values
        k = int(dist.argmin())
        assert dist[k] <= tol_box, f'box {i}: off by {float(dist[k])}'
        unpaired.remove(near[k])


@pytest.mark.parametrize('config', CONFIGS, ids=lambda c: os.path.basename(c)[:-3])
def test_onnx_detector_equals_mmdet3d_eager(config, tmp_path):
    from mmregnet.benchmark.detector import detector_inputs
    from mmregnet.deploy import OnnxDetector
    cfg, ref, folder, points = _setup(config, tmp_path)
    if 'regnety' not in config:  # mmdet3d's own backbone is the reference where it exists
        assert type(ref.pts_backbone).__name__ == 'NoStemRegNet'
    with torch.no_grad():
        expected = ref.test_step(detector_inputs([points]))[0]
    det = OnnxDetector(folder)
    assert det.providers == ['CPUExecutionProvider']
    _assert_same_predictions(expected, det(points))
    _assert_same_predictions(expected, det(points.numpy()))  # an array does as well


def test_batch_of_two_clouds_equals_eager_and_single_runs(nus):
    from mmregnet.benchmark.detector import detector_inputs
    from mmregnet.deploy import OnnxDetector
    cfg, ref, folder, points = nus
    other = point_cloud_batch(cfg, num_boxes=6, background=1200, seed=5)['inputs']['points'][0]
    with torch.no_grad():
        expected = ref.test_step(detector_inputs([points, other]))
    det = OnnxDetector(folder)
    batch = det([points, other])
    assert isinstance(batch, list) and len(batch) == 2
    for e, a in zip(expected, batch):
        _assert_same_predictions(e, a)
    _assert_same_predictions(batch[1], det(other))


def test_manifest_records_what_the_runtime_needs(nus):
    import json

    from mmregnet.deploy.configs import network_fingerprint
    cfg, _, folder, _ = nus
    assert sorted(os.listdir(folder)) == ['detector.json', 'detector.onnx']
    manifest = json.loads(open(os.path.join(folder, 'detector.json')).read())
    assert manifest['network'] == network_fingerprint(cfg)
    assert manifest['class_names'][:2] == ['car', 'truck'] and manifest['point_dims'] == 4
    assert manifest['voxelizer']['max_num_points'] == 64
    assert manifest['decoder']['nms_pre'] == 1000 and manifest['output_kinds'] == [
        'cls_score', 'bbox_pred', 'dir_cls_pred']
    assert manifest['inputs'] == ['voxels', 'num_points', 'coors', 'batch_size']
    assert manifest['output_layout'] == 'BHWC' and manifest['version'] == 2
    import onnx
    graph = onnx.load(os.path.join(folder, 'detector.onnx'))
    assert [i.name for i in graph.graph.input] == manifest['inputs']
    dims = [d.dim_param or d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ['pillars', 64, 4]  # any number of pillars


def test_a_cloud_without_pillars_gets_the_boxes_of_an_empty_canvas(nus):
    # All points outside the range: no pillar at all. mmdet3d's test_step cannot take
    # such a sample (it reads the batch size off the last pillar); the graph scatters
    # nothing, so its boxes are those of mmdet3d's network on an all-zero pseudo image.
    from mmdet3d.structures import LiDARInstance3DBoxes

    from mmregnet.benchmark.detector import detector_inputs
    from mmregnet.deploy import OnnxDetector
    cfg, ref, folder, points = nus
    far = points.clone()
    far[:, :2] += 1000.0
    det = OnnxDetector(folder)
    out = det([points, far])
    ny, nx = cfg.model.pts_middle_encoder.output_shape
    with torch.no_grad():
        expected = ref.test_step(detector_inputs([points]))[0]
        maps = ref.pts_bbox_head(ref.pts_neck(ref.pts_backbone(torch.zeros(1, 64, ny, nx))))
        empty = ref.pts_bbox_head.predict_by_feat(
            *maps, batch_input_metas=[dict(box_type_3d=LiDARInstance3DBoxes)])[0]
    _assert_same_predictions(expected, out[0])
    e, a = empty, out[1].pred_instances_3d
    assert len(a.scores_3d) == len(e.scores_3d)
    assert torch.allclose(a.scores_3d.sort().values, e.scores_3d.sort().values, rtol=RTOL,
                          atol=1e-6)


def test_the_neck_upsamples_by_a_fixed_factor_only_where_levels_halve(nus):
    from mmregnet.deploy.detector_graph import fixed_scale_neck
    cfg, ref, _, _ = nus
    neck, backbone = ref.pts_neck, ref.pts_backbone
    ny, nx = cfg.model.pts_middle_encoder.output_shape
    fixed = fixed_scale_neck(neck, backbone, (64, ny, nx))
    assert fixed is not neck and fixed.upsample_cfg == dict(mode='nearest', scale_factor=2)
    assert neck.upsample_cfg == dict(mode='nearest')  # the detector's own neck is unchanged
    assert all(a is b for a, b in zip(fixed.parameters(), neck.parameters()))  # shared weights
    with torch.no_grad():
        feats = [torch.randn(1, c, 16 // 2**i, 16 // 2**i) for i, c in enumerate([64, 160, 384])]
        assert all(torch.equal(a, b) for a, b in zip(fixed(feats), neck(feats)))
    # 30 x 30 gives levels of 15, 8 and 4 cells: upsampling by 2 would not fit, kept by size.
    assert fixed_scale_neck(neck, backbone, (64, 30, 30)) is neck


def test_repeated_runs_reuse_the_anchors_and_give_the_same_boxes(nus):
    from mmregnet.deploy import OnnxDetector
    from mmregnet.deploy.detector_graph import ReusedAnchors
    _, _, folder, points = nus
    det = OnnxDetector(folder)
    assert isinstance(det.head.prior_generator, ReusedAnchors)
    first, second = det(points).pred_instances_3d, det(points).pred_instances_3d
    assert len(det.head.prior_generator.made) == 1
    assert torch.equal(first.bboxes_3d.tensor, second.bboxes_3d.tensor)
    assert torch.equal(first.scores_3d, second.scores_3d)
    # The PyTorch deploy path reuses them too, wrapping once however often it is called.
    import copy

    from mmregnet.deploy import switch_detector_to_deploy
    model = switch_detector_to_deploy(switch_detector_to_deploy(copy.deepcopy(nus[1])))
    assert isinstance(model.pts_bbox_head.prior_generator, ReusedAnchors)
    assert not isinstance(model.pts_bbox_head.prior_generator.generator, ReusedAnchors)


def test_an_int8_export_keeps_the_encoder_and_head_float_and_stays_near_float32(nus, tmp_path):
    import json

    import numpy as np
    import onnx

    from mmregnet.deploy import OnnxDetector
    from mmregnet.deploy.export import export_model
    from mmregnet.deploy.quantize import FLOAT_PARTS
    cfg, ref, folder, points = nus
    other = point_cloud_batch(cfg, num_boxes=6, background=1200, seed=5)['inputs']['points'][0]
    int8 = str(tmp_path / 'int8')
    export_model(ref, cfg, int8, calibration=[points, other], calibration_source='test clouds')
    manifest = json.loads(open(os.path.join(int8, 'detector.json')).read())
    assert manifest['precision'] == 'int8' and manifest['calibration']['frames'] == 2
    assert sorted(os.listdir(int8)) == ['detector.json', 'detector.onnx']  # no scratch left
    graph = onnx.load(os.path.join(int8, 'detector.onnx')).graph
    made_by = {o: n for n in graph.node for o in n.output}
    floats = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    quantized = [n for n in graph.node if n.op_type == 'Conv'
                 and made_by.get(n.input[1]) is not None
                 and made_by[n.input[1]].op_type == 'DequantizeLinear']
    assert len(quantized) > 20 and not any(n.name.startswith(FLOAT_PARTS) for n in quantized)
    kept = [n for n in graph.node if n.name.startswith(('/head/', '/encoder/'))
            and n.op_type in ('Conv', 'Gemm', 'MatMul')]
    assert kept and all(n.input[1] in floats for n in kept)
    det32, det8 = OnnxDetector(folder), OnnxDetector(int8)
    assert (det32.precision, det8.precision) == ('float32', 'int8')
    with torch.no_grad():
        voxels = det32.preprocessor(dict(inputs=dict(points=[points])), False)['inputs']['voxels']
    for want, got in zip(det32.run_graph(voxels, 1), det8.run_graph(voxels, 1)):
        rms = float(torch.sqrt(((got - want) ** 2).mean() / (want ** 2).mean()))
        assert rms < 0.1, rms  # int8 rounding, not another network
    assert len(det8(points).pred_instances_3d.scores_3d) > 0
    assert np.isfinite(det8(points).pred_instances_3d.scores_3d.numpy()).all()


# One config of each other neck, head and backbone family than the 400MF FPN above.
INT8_FAMILIES = [c for c in CONFIGS if os.path.basename(c).startswith((
    'pointpillars_hv_regnet-400mf_secfpn_sbn-all_8xb2', 'ssn_hv_regnet-400mf_secfpn_sbn-all_16xb2',
    'pointpillars_hv_regnety-400mf', 'pointpillars_hv_regnet-400mf_fpn_head-free-anchor'))]


@pytest.mark.parametrize('config', INT8_FAMILIES, ids=lambda c: os.path.basename(c)[:-3])
def test_int8_exports_of_other_necks_heads_and_backbones_run(config, tmp_path):
    from mmregnet.deploy import OnnxDetector
    from mmregnet.deploy.configs import build_detector, load_detector_config
    from mmregnet.deploy.export import export_model
    assert len(INT8_FAMILIES) == 4
    cfg = shrink_range(load_detector_config(config))
    torch.manual_seed(0)
    model = build_detector(cfg, init=False).eval()
    points = point_cloud_batch(cfg, seed=1)['inputs']['points'][0]
    export_model(model, cfg, str(tmp_path / 'int8'), calibration=[points])
    det = OnnxDetector(str(tmp_path / 'int8'))
    assert det.precision == 'int8' and len(det(points).pred_instances_3d.scores_3d) > 0
