"""The one ONNX graph, points to boxes, against mmdet3d's eager detector, for every config.

For each PointPillars config under configs/regnet (nuScenes and Lyft, FPN and
SECOND-FPN, RegNetX and RegNetY, the anchor, FreeAnchor and SSN heads): the
same weights (random, with random BatchNorm statistics, and a class bias that
sends boxes to NMS) in mmdet3d's eager detector (with mmdet3d's NoStemRegNet
where it has one) and in the exported graph, run by ONNX Runtime alone, give
the same boxes, scores and labels in the same order, on generated frames: a
street, a crowded one (overlapping objects, many boxes reaching NMS), one with
points outside the range, one whose pillars hold more than ``max_points``;
an empty cloud and one with every point outside the range give no boxes.
The point-cloud range is cut to a 32 x 32 canvas (tests/detector_inputs.py):
the network is the config's, only the pseudo image is smaller.
"""
import glob
import json
import os

import numpy as np
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


def _setup(config, folder, boxes=150, cfg_options=None):
    """Reference detector, the export folder of the same weights and its session."""
    import onnxruntime as ort

    from norms import randomize_norms
    from mmregnet.benchmark.detector import calibrate_boxes, detector_inputs, detector_pair
    from mmregnet.deploy.configs import load_detector_config
    from mmregnet.deploy.export import export_model
    cfg = shrink_range(load_detector_config(config, cfg_options))
    ours, ref = detector_pair(cfg, init=False)  # PyTorch's init, then random norms
    randomize_norms(ours, seed=3)
    points = point_cloud_batch(cfg, seed=1)['inputs']['points'][0]
    calibrate_boxes(ours, detector_inputs([points]), boxes)
    ref.load_state_dict(ours.state_dict(), strict=True)
    export_model(ours, cfg, folder, config_path=config)
    session = ort.InferenceSession(os.path.join(folder, 'detector.onnx'),
                                   providers=['CPUExecutionProvider'])
    return cfg, ref, folder, session


def frames(cfg):
    """Named generated clouds in the layout of ``cfg`` (see the module docstring)."""
    layer = cfg.model.data_preprocessor.voxel_layer
    low = np.array(layer.point_cloud_range[:3])
    high = np.array(layer.point_cloud_range[3:])
    size, m = np.array(layer.voxel_size), layer.max_num_points
    street = point_cloud_batch(cfg, seed=1)['inputs']['points'][0].numpy()
    crowded = point_cloud_batch(cfg, num_boxes=24, points_per_box=40, background=1500,
                                seed=2)['inputs']['points'][0].numpy()
    rng = np.random.default_rng(3)
    outside = street.copy()[:1000]
    axis = rng.integers(0, 3, len(outside))
    outside[np.arange(len(outside)), axis] = np.where(
        rng.random(len(outside)) < 0.5, low[axis] - 0.5, high[axis] + 0.5)
    outside = np.concatenate([street, outside])[rng.permutation(len(street) + len(outside))]
    cells = rng.uniform(low, high - size, (60, 3))
    dense = np.repeat(cells, m + 7, axis=0) + rng.uniform(0, 0.9, (60 * (m + 7), 3)) * size
    dense = np.column_stack([dense, rng.uniform(0, 1, (len(dense), street.shape[1] - 3))])
    overfull = np.concatenate([street, dense])[rng.permutation(len(street) + len(dense))]
    return {name: np.ascontiguousarray(cloud, np.float32) for name, cloud in dict(
        street=street, crowded=crowded, outside=outside, overfull=overfull).items()}


def assert_same_detections(expected, outputs, what):
    """Same count and order, values within RTOL; equal scores may come in any order.

    mmdet3d sorts scores with torch's unstable sort: among exactly equal scores
    (anchors of empty canvas look alike to random weights) its order is
    arbitrary, while the graph puts the lower anchor first. Within a run of
    equal scores, boxes are paired by label and nearest values.
    """
    boxes, scores, labels = outputs
    e = expected.pred_instances_3d
    want_boxes, want_scores = e.bboxes_3d.tensor.numpy(), e.scores_3d.numpy()
    want_labels = e.labels_3d.numpy()
    assert len(scores) == len(want_scores), f'{what}: {len(scores)} boxes, expected ' \
        f'{len(want_scores)}'
    assert boxes.dtype == np.float32 and labels.dtype == np.int64
    assert boxes.shape == want_boxes.shape, what
    off = np.flatnonzero(~np.isclose(scores, want_scores, rtol=RTOL, atol=1e-7))
    assert not len(off), f'{what}: scores differ at {off[:5]}: {scores[off[0]:off[0] + 3]} ' \
        f'(labels {labels[off[0]:off[0] + 3]}), expected {want_scores[off[0]:off[0] + 3]} ' \
        f'(labels {want_labels[off[0]:off[0] + 3]}) of {len(scores)}'
    start = 0
    for end in range(1, len(scores) + 1):
        if end < len(scores) and abs(want_scores[end] - want_scores[end - 1]) <= \
                RTOL * abs(want_scores[end]):
            continue
        free = list(range(start, end))
        for i in range(start, end):
            cost = [np.abs(boxes[j] - want_boxes[i]).max() if labels[j] == want_labels[i]
                    else np.inf for j in free]
            j = free.pop(int(np.argmin(cost)))
            assert labels[j] == want_labels[i], f'{what}: box {i} has no partner of its label'
            assert np.allclose(boxes[j], want_boxes[i], rtol=RTOL, atol=RTOL), \
                f'{what}: box {i} {boxes[j]} != {want_boxes[i]}'
        start = end


def _run(session, points):
    return session.run(None, dict(points=points))


def _eager(ref, points):
    from mmregnet.benchmark.detector import detector_inputs
    with torch.no_grad():
        return ref.test_step(detector_inputs([torch.from_numpy(points)]))[0]


def _assert_no_boxes(outputs, box_dim):
    boxes, scores, labels = outputs
    assert boxes.shape == (0, box_dim) and scores.shape == (0,) and labels.shape == (0,)


@pytest.fixture(scope='module')
def nus(tmp_path_factory):
    """The nuScenes 400MF FPN detector exported once for the manifest and int8 tests."""
    return _setup(NUS_400MF, str(tmp_path_factory.mktemp('nus') / 'onnx'))


@pytest.mark.parametrize('config', CONFIGS, ids=lambda c: os.path.basename(c)[:-3])
def test_graph_gives_mmdet3d_eager_boxes(config, tmp_path):
    cfg, ref, _, session = _setup(config, str(tmp_path / 'onnx'))
    if 'regnety' not in config:  # mmdet3d's own backbone is the reference where it exists
        assert type(ref.pts_backbone).__name__ == 'NoStemRegNet'
    reached = 0
    for name, points in frames(cfg).items():
        expected = _eager(ref, points)
        assert_same_detections(expected, _run(session, points), name)
        reached = max(reached, len(expected.pred_instances_3d.scores_3d))
    assert reached > 10  # boxes reached NMS and came out of it
    box_dim = int(ref.pts_bbox_head.box_code_size)
    dims = frames(cfg)['street'].shape[1]
    _assert_no_boxes(_run(session, np.zeros((0, dims), np.float32)), box_dim)
    far = frames(cfg)['street'] + np.array([1000, 0, 0] + [0] * (dims - 3), np.float32)
    _assert_no_boxes(_run(session, far), box_dim)


def test_graph_keeps_mmdet3d_boxes_when_max_voxels_binds(tmp_path):
    # 300 voxels of a 32 x 32 canvas: the street frame has more occupied cells.
    cfg, ref, _, session = _setup(
        NUS_400MF, str(tmp_path / 'onnx'),
        cfg_options={'model.data_preprocessor.voxel_layer.max_voxels': (300, 300)})
    points = frames(cfg)['overfull']
    with torch.no_grad():
        from mmregnet.benchmark.detector import detector_inputs
        voxels = ref.data_preprocessor(detector_inputs([torch.from_numpy(points)]), False)
    assert len(voxels['inputs']['voxels']['num_points']) == 300
    assert_same_detections(_eager(ref, points), _run(session, points), 'max_voxels')


def test_manifest_and_graph_hold_what_a_runtime_reads(nus):
    import onnx

    from mmregnet.deploy.configs import network_fingerprint
    from mmregnet.deploy.format import FORMAT, FORMAT_VERSION
    from mmregnet.deploy.onnx_export import OPSET, foreign_operators
    cfg, _, folder, session = nus
    assert sorted(os.listdir(folder)) == ['detector.json', 'detector.onnx']
    manifest = json.loads(open(os.path.join(folder, 'detector.json')).read())
    assert (manifest['format'], manifest['version']) == (FORMAT, FORMAT_VERSION) == (
        'mmregnet-onnx-detector', 3)
    assert manifest['network'] == network_fingerprint(cfg) and manifest['precision'] == 'float32'
    assert manifest['class_names'][:2] == ['car', 'truck'] and manifest['point_dims'] == 4
    assert manifest['box_dim'] == 9 and manifest['opset'] == OPSET
    assert manifest['voxelizer']['max_num_points'] == 64
    assert manifest['voxelizer']['max_voxels'] == 40000  # the test-time limit
    assert manifest['point_cloud_range'] == manifest['voxelizer']['point_cloud_range']
    assert manifest['decoder']['nms_pre'] == 1000 and manifest['decoder']['max_num'] == 500
    assert manifest['inputs'] == ['points']
    assert manifest['outputs'] == ['bboxes_3d', 'scores_3d', 'labels_3d']
    path = os.path.join(folder, 'detector.onnx')
    model = onnx.load(path)
    assert foreign_operators(path) == []  # no custom operator
    # Nor a ScatterND with a reduction: ONNX Runtime 1.31 runs it on several threads without
    # guarding repeated indices, and loses updates.
    assert not [n.name for n in model.graph.node if n.op_type == 'ScatterND' and n.attribute]
    assert [(o.domain, o.version) for o in model.opset_import] == [('', OPSET)]
    props = {p.key: p.value for p in model.metadata_props}
    assert props == dict(mmregnet_network=manifest['network'], mmregnet_precision='float32',
                         mmregnet_config=manifest['config_name'])
    inputs = session.get_inputs()
    assert [i.name for i in inputs] == ['points'] and inputs[0].type == 'tensor(float)'
    assert inputs[0].shape == ['points', 4]  # any number of points
    outputs = {o.name: (o.type, o.shape) for o in session.get_outputs()}
    assert outputs == {'bboxes_3d': ('tensor(float)', ['boxes', 9]),
                       'scores_3d': ('tensor(float)', ['boxes']),
                       'labels_3d': ('tensor(int64)', ['boxes'])}


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


def test_deploying_in_pytorch_reuses_the_anchors_once(nus):
    import copy

    from mmregnet.deploy import switch_detector_to_deploy
    from mmregnet.deploy.detector_graph import ReusedAnchors
    model = switch_detector_to_deploy(switch_detector_to_deploy(copy.deepcopy(nus[1])))
    assert isinstance(model.pts_bbox_head.prior_generator, ReusedAnchors)
    assert not isinstance(model.pts_bbox_head.prior_generator.generator, ReusedAnchors)


def _head_outputs(path, names):
    """A session of the graph at ``path`` that also hands out the tensors ``names``."""
    import onnx
    import onnxruntime as ort
    model = onnx.load(path)
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in names)
    return ort.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])


def test_an_int8_export_quantizes_backbone_and_neck_only_and_stays_near_float32(nus, tmp_path):
    import onnx

    from mmregnet.deploy.export import export_model
    from mmregnet.deploy.onnx_export import foreign_operators
    from mmregnet.deploy.quantize import QUANTIZED_PARTS
    cfg, ref, folder, session = nus
    street = frames(cfg)['street']
    other = point_cloud_batch(cfg, num_boxes=6, background=1200, seed=5)['inputs']['points'][0]
    int8 = str(tmp_path / 'int8')
    export_model(ref, cfg, int8, calibration=[torch.from_numpy(street), other],
                 calibration_source='test clouds')
    manifest = json.loads(open(os.path.join(int8, 'detector.json')).read())
    assert manifest['precision'] == 'int8' and manifest['calibration']['frames'] == 2
    assert sorted(os.listdir(int8)) == ['detector.json', 'detector.onnx']  # no scratch left
    path = os.path.join(int8, 'detector.onnx')
    assert foreign_operators(path) == []
    graph = onnx.load(path).graph
    made_by = {o: n for n in graph.node for o in n.output}
    quantized = [n for n in graph.node if n.op_type == 'Conv'
                 and made_by.get(n.input[1]) is not None
                 and made_by[n.input[1]].op_type == 'DequantizeLinear']
    assert len(quantized) > 20 and all(n.name.startswith(QUANTIZED_PARTS) for n in quantized)
    dequantized = {o for n in graph.node if n.op_type == 'DequantizeLinear' for o in n.output}
    outside = [n for n in graph.node if not n.name.startswith(QUANTIZED_PARTS)
               and n.op_type not in ('QuantizeLinear', 'DequantizeLinear')]
    assert not any(i in dequantized for n in outside if n.name.startswith(('/head/', '/encoder'))
                   for i in n.input[1:2])  # the encoder's and head's weights stay float32
    heads = [n.output[0] for n in graph.node if n.op_type == 'Conv'
             and n.name.startswith('/head/')]
    maps32 = _head_outputs(os.path.join(folder, 'detector.onnx'), heads).run(
        heads, dict(points=street))
    maps8 = _head_outputs(path, heads).run(heads, dict(points=street))
    for want, got in zip(maps32, maps8):
        rms = float(np.sqrt(((got - want) ** 2).mean() / (want ** 2).mean()))
        assert rms < 0.1, rms  # int8 rounding, not another network
    boxes, scores, _ = _run(_head_outputs(path, []), street)
    assert len(scores) > 0 and np.isfinite(boxes).all()


# One config of each other neck, head and backbone family than the 400MF FPN above.
INT8_FAMILIES = [c for c in CONFIGS if os.path.basename(c).startswith((
    'pointpillars_hv_regnet-400mf_secfpn_sbn-all_8xb2', 'ssn_hv_regnet-400mf_secfpn_sbn-all_16xb2',
    'pointpillars_hv_regnety-400mf', 'pointpillars_hv_regnet-400mf_fpn_head-free-anchor'))]


@pytest.mark.parametrize('config', INT8_FAMILIES, ids=lambda c: os.path.basename(c)[:-3])
def test_int8_exports_of_other_necks_heads_and_backbones_run(config, tmp_path):
    import onnxruntime as ort

    from mmregnet.deploy.configs import build_detector, load_detector_config
    from mmregnet.deploy.export import export_model
    assert len(INT8_FAMILIES) == 4
    cfg = shrink_range(load_detector_config(config))
    torch.manual_seed(0)
    model = build_detector(cfg, init=False).eval()
    points = point_cloud_batch(cfg, seed=1)['inputs']['points'][0]
    manifest = export_model(model, cfg, str(tmp_path / 'int8'), calibration=[points])
    session = ort.InferenceSession(str(tmp_path / 'int8' / 'detector.onnx'),
                                   providers=['CPUExecutionProvider'])
    boxes, scores, labels = _run(session, points.numpy())
    assert manifest['precision'] == 'int8' and boxes.shape[1] == manifest['box_dim']
    assert len(scores) == len(labels) and np.isfinite(boxes).all()
