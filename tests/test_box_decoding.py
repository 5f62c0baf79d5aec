"""The exportable box decoder against mmdet3d's own ``predict_by_feat``, eager and in ONNX Runtime.

For the head of every PointPillars config under configs/regnet (Anchor3DHead,
FreeAnchor3DHead, SSN's ShapeAwareHead; configs with the same head and test
settings share a case): crafted head maps with crowds of overlapping boxes
that reach NMS, decoded by the real head and by :class:`BoxDecoder` exported
to ONNX, give the same boxes, scores and labels in the same order.
"""
import glob
import json
import os

import numpy as np
import pytest
import torch

pytest.importorskip('mmdet3d')
ort = pytest.importorskip('onnxruntime')

CONFIGS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), '..', 'configs', 'regnet',
                                        '*_hv_*.py')))
NUS = [c for c in CONFIGS if c.endswith('regnet-400mf_fpn_sbn-all_8xb4-2x_nus-3d.py')][0]
RTOL = 1e-4
OUTPUTS = ['bboxes_3d', 'scores_3d', 'labels_3d']


def _head(config, **test_cfg):
    """The config's head with its test settings (``test_cfg`` overriding), in eval mode."""
    import mmdet3d.models  # noqa: F401 (registers the heads)
    from mmdet3d.registry import MODELS
    from mmengine.config import ConfigDict

    from mmregnet.deploy.configs import load_detector_config
    model = load_detector_config(config).model
    cfg = model.pts_bbox_head.copy()
    cfg.update(train_cfg=None, test_cfg=ConfigDict(dict(model.test_cfg.pts, **test_cfg)))
    return MODELS.build(cfg).eval()


def _unique_heads():
    """One config per distinct head and test settings."""
    from mmregnet.deploy.configs import load_detector_config
    seen = {}
    for config in CONFIGS:
        model = load_detector_config(config).model
        key = json.dumps([model.pts_bbox_head.to_dict(), model.test_cfg.pts.to_dict()],
                         sort_keys=True, default=str)
        seen.setdefault(key, config)
    return sorted(seen.values())


def _crowd(flat_cls, gen, hot, softmax, groups=6):
    """Lights ``hot`` anchors in a few runs of neighbours, plus a scatter: crowds for NMS."""
    n, c = flat_cls.shape
    flat_cls.fill_(-9.0)  # sigmoid 1e-4: below every score_thr
    if softmax:  # the last column is the background's
        flat_cls[:, -1] = 9.0
    starts = torch.randint(0, n - hot // groups, (groups,), generator=gen)
    index = torch.cat([s + torch.arange(hot // groups) for s in starts]
                      + [torch.randint(0, n, (hot // 4,), generator=gen)])
    flat_cls[index] = torch.randn(len(index), c, generator=gen) * 1.5 - 0.5


def _maps(head, seed, hot=120, size=32):
    """Crafted maps of one sample: ``(cls, box, dir)`` lists as the head's forward gives."""
    gen = torch.Generator().manual_seed(seed)
    levels = head.prior_generator.num_levels
    feats = [torch.randn(1, head.in_channels, size >> i, size >> i, generator=gen)
             for i in range(levels)]
    with torch.no_grad():
        cls, box, dirs = head(feats)[:3]
    for c in cls:
        if c.dim() == 4:  # (1, A * C, H, W): light anchors in (h, w, a) order
            flat = c.permute(0, 2, 3, 1).reshape(-1, head.num_classes)
            _crowd(flat, gen, hot, not head.use_sigmoid_cls)
            c.copy_(flat.view(c.shape[0], c.shape[2], c.shape[3], -1).permute(0, 3, 1, 2))
        else:  # SSN's (1, N, C)
            _crowd(c.view(-1, c.shape[-1]), gen, hot, not head.use_sigmoid_cls)
    box = [torch.randn(b.shape, generator=gen) * 0.15 for b in box]
    dirs = [torch.randn(d.shape, generator=gen) for d in dirs]
    return cls, box, dirs


def _reference(head, maps):
    from mmdet3d.structures import LiDARInstance3DBoxes
    result = head.predict_by_feat(*maps, batch_input_metas=[dict(
        box_type_3d=LiDARInstance3DBoxes)])[0]
    return result.bboxes_3d.tensor, result.scores_3d, result.labels_3d


def _graph_maps(maps):
    """The maps as DetectorGraph hands them out: flat, 4-D ones channels-last."""
    return [m.permute(0, 2, 3, 1) if m.dim() == 4 else m for kind in maps for m in kind]


def _tie_order(boxes, labels, runs):
    """Row order that sorts each run of equal reference scores by label, then box."""
    keys = [(int(r), int(lab), tuple(round(v, 3) for v in box))
            for r, lab, box in zip(runs, labels.tolist(), boxes.tolist())]
    return sorted(range(len(keys)), key=keys.__getitem__)


def _assert_same(expected, actual, what):
    """Same count, labels, order and values within RTOL.

    Boxes of exactly equal scores may come in any order: mmdet3d orders
    them by torch's CPU sort, which does not keep equal keys in place.
    """
    want_boxes, want_scores, want_labels = [torch.as_tensor(t) for t in expected]
    boxes, scores, labels = [torch.as_tensor(t) for t in actual]
    assert len(scores) == len(want_scores), f'{what}: {len(scores)} vs {len(want_scores)} boxes'
    assert labels.dtype == torch.int64 and boxes.dtype == scores.dtype == torch.float32
    torch.testing.assert_close(scores, want_scores, rtol=RTOL, atol=1e-6)
    runs = torch.cat([torch.zeros(1, dtype=torch.long),
                      (want_scores[1:] != want_scores[:-1]).long().cumsum(0)])
    mine = _tie_order(boxes, labels, runs)
    theirs = _tie_order(want_boxes, want_labels, runs)
    assert torch.equal(labels[mine], want_labels[theirs]), what
    scale = max(float(want_boxes.abs().max()), 1.0) if len(want_boxes) else 1.0
    torch.testing.assert_close(boxes[mine], want_boxes[theirs], rtol=0, atol=RTOL * scale)


def _export(decoder, maps, path):
    from mmregnet.deploy.onnx_export import export_graph
    names = [f'map_{i}' for i in range(len(maps))]
    export_graph(decoder, tuple(maps), path, names, OUTPUTS, {})
    options = ort.SessionOptions()
    options.log_severity_level = 1  # warnings and errors are failures below
    session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    return lambda ms: session.run(OUTPUTS, {n: m.contiguous().numpy() for n, m in zip(names, ms)})


def _decoder(head, maps):
    from mmregnet.deploy import BoxDecoder
    sizes = [tuple(m.shape[-2:]) for m in maps[0]] if maps[0][0].dim() == 4 else None
    return BoxDecoder(head, sizes)


@pytest.mark.parametrize('config', _unique_heads(), ids=lambda c: os.path.basename(c)[:-3])
def test_decoder_equals_predict_by_feat_eager_and_onnx(config, tmp_path):
    import onnx
    head = _head(config)
    maps = _maps(head, seed=0)
    decoder = _decoder(head, maps)
    run = _export(decoder, _graph_maps(maps), str(tmp_path / 'decoder.onnx'))
    assert {o.domain for o in onnx.load(str(tmp_path / 'decoder.onnx')).opset_import} == {''}
    for seed in range(2):
        maps = _maps(head, seed)
        expected = _reference(head, maps)
        assert len(expected[1]) > 20, 'the crafted maps should send many boxes to NMS'
        _assert_same(expected, decoder(*_graph_maps(maps)), f'eager, seed {seed}')
        _assert_same(expected, run(_graph_maps(maps)), f'onnxruntime, seed {seed}')


@pytest.mark.parametrize('settings', [
    dict(max_num=25),                      # more kept than max_num: best by score overall
    dict(nms_pre=5000),                    # no level cut by nms_pre
    dict(use_rotate_nms=False),            # nms_normal_bev: axis-aligned IoU, '>'
    dict(score_thr=0.999),                 # nothing above the threshold: empty outputs
    dict(nms_thr=0.01),                    # long chains of suppression
], ids=lambda s: '-'.join(f'{k}={v}' for k, v in s.items()))
def test_decoder_settings_branches(settings, tmp_path):
    head = _head(NUS, **settings)
    maps = _maps(head, seed=3, hot=200)
    decoder = _decoder(head, maps)
    run = _export(decoder, _graph_maps(maps), str(tmp_path / 'decoder.onnx'))
    expected = _reference(head, maps)
    _assert_same(expected, run(_graph_maps(maps)), 'onnxruntime')
    if settings.get('score_thr'):
        assert len(expected[1]) == 0
    if settings.get('max_num'):
        assert len(expected[1]) == 25


def test_softmax_scores_exclude_the_background_column(tmp_path):
    from mmdet3d.registry import MODELS

    from mmregnet.deploy.configs import load_detector_config
    model = load_detector_config(NUS).model
    cfg = model.pts_bbox_head.copy()
    cfg.update(train_cfg=None, test_cfg=model.test_cfg.pts)
    cfg['loss_cls'] = dict(type='mmdet.CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)
    head = MODELS.build(cfg).eval()
    assert not head.use_sigmoid_cls and head.num_classes == 11
    maps = _maps(head, seed=5, hot=40)
    run = _export(_decoder(head, maps), _graph_maps(maps), str(tmp_path / 'decoder.onnx'))
    expected = _reference(head, maps)
    assert len(expected[1]) > 0 and int(expected[2].max()) < 10
    _assert_same(expected, run(_graph_maps(maps)), 'onnxruntime')


def test_rotated_iou_equals_mmcv_on_crafted_pairs():
    """mmcv's IoU but where mmcv's own loses the overlap: one box given as another's twin.

    A box and the same box given with width and height swapped and the yaw
    turned by pi/2 have IoU 1; mmcv's intersection points of their nearly
    parallel edges make it anywhere from 0 to 1 there.
    """
    import math

    from mmcv.ops import box_iou_rotated

    from mmregnet.deploy.rotated_nms import rotated_iou
    gen = torch.Generator().manual_seed(0)
    n = 4000
    a = torch.cat([torch.rand(n, 2, generator=gen) * 6, torch.rand(n, 2, generator=gen) * 4 + 0.2,
                   (torch.rand(n, 1, generator=gen) - 0.5) * 7], 1)
    b = torch.cat([a[:, :2] + torch.randn(n, 2, generator=gen), a[:, 2:4].flip(1),
                   (torch.rand(n, 1, generator=gen) - 0.5) * 7], 1)
    k = n // 5
    b[:k] = a[:k]  # the same box
    a[k:2 * k, 4] = b[k:2 * k, 4] = 0  # parallel edges on common lines
    b[k:2 * k, 1:4] = a[k:2 * k, 1:4]
    b[2 * k:3 * k] = a[2 * k:3 * k] * torch.tensor([1, 1, 0.5, 0.5, 1])  # one inside the other
    b[3 * k:4 * k, :2] = a[3 * k:4 * k, :2] + 0.05  # near twins: sizes swapped, yaw + pi/2
    b[3 * k:4 * k, 4] = a[3 * k:4 * k, 4] + math.pi / 2
    expected = box_iou_rotated(a, b, aligned=True)
    torch.testing.assert_close(rotated_iou(a, b), expected, rtol=0, atol=1e-4)
    twins = torch.cat([a[:k, :2], a[:k, 2:4].flip(1), a[:k, 4:] + math.pi / 2], 1)
    torch.testing.assert_close(rotated_iou(a[:k], twins), torch.ones(k), rtol=0, atol=1e-5)


@pytest.mark.parametrize('change, message', [
    (dict(use_direction_classifier=False), 'without use_direction_classifier'),
    (dict(test_cfg=dict(use_rotate_nms=True, nms_thr=0.0, max_num=5)), 'nms_thr must be > 0'),
    (dict(test_cfg=dict(use_rotate_nms=True, nms_thr=0.2, max_num=0)), 'max_num must be >= 1'),
    (dict(test_cfg=dict(nms_thr=0.2)), 'lacks max_num, use_rotate_nms'),
    (dict(bbox_coder=dict(type='DeltaXYZWLHRBBoxCoder', code_size=9), type='PartA2RPNHead'),
     'got PartA2RPNHead'),
])
def test_unsupported_heads_are_refused_in_one_line(change, message):
    from mmdet3d.registry import MODELS
    from mmengine.config import ConfigDict

    from mmregnet.deploy import BoxDecoder, DeployError
    from mmregnet.deploy.configs import load_detector_config
    model = load_detector_config(NUS).model
    cfg = model.pts_bbox_head.copy()
    cfg.update(train_cfg=None, test_cfg=model.test_cfg.pts)
    for key, value in change.items():  # replaced, not merged
        cfg[key] = ConfigDict(value) if key == 'test_cfg' else value
    head = MODELS.build(cfg)
    with pytest.raises(DeployError, match=message) as error:
        BoxDecoder(head, [(8, 8), (4, 4), (2, 2)])
    assert '\n' not in str(error.value)


def test_no_candidate_one_candidate_and_no_overlap(tmp_path):
    head = _head(NUS)
    maps = _maps(head, seed=1)
    run = _export(_decoder(head, maps), _graph_maps(maps), str(tmp_path / 'decoder.onnx'))
    quiet = [[torch.full_like(m, -20.0) for m in maps[0]]] + list(maps[1:])
    boxes, scores, labels = run(_graph_maps(quiet))
    assert boxes.shape == (0, 9) and scores.shape == (0,) and labels.shape == (0,)
    assert (boxes.dtype, scores.dtype, labels.dtype) == (np.float32, np.float32, np.int64)
    for lit in ([(0, 5, 5, 3)], [(0, 2, 2, 1), (0, 28, 28, 4), (1, 1, 14, 0)]):
        quiet[0] = [torch.full_like(m, -20.0) for m in maps[0]]
        for level, h, w, channel in lit:  # far apart: no pair to compare
            quiet[0][level][0, channel, h, w] = 2.0
        expected = _reference(head, quiet)
        assert len(expected[1]) == len(lit)
        _assert_same(expected, run(_graph_maps(quiet)), f'{len(lit)} lit')
