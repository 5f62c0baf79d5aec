"""Every config loads, builds through the registries, trains a step and predicts on the CPU.

Every config of mmdet3d that uses RegNet (its regnet/, free_anchor/ and ssn/ folders) has a
twin here that builds the same network (parameter count and state-dict keys).
"""
import glob
import os

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from mmregnet import RegNet, check_neck_channels
from mmregnet.arch import arch_name

from detector_inputs import image_batch, point_cloud_batch, shrink_range

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(os.path.relpath(p, ROOT) for p in glob.glob(f'{ROOT}/configs/regnet/*.py')
                 if 'demo' not in os.path.basename(p))
#: mmdet3d's config folders holding RegNet configs.
MMDET3D_FOLDERS = ('regnet', 'free_anchor', 'ssn')


def _load(path):
    return Config.fromfile(os.path.join(ROOT, path) if not os.path.isabs(path) else path)


def _build(cfg):
    scope = cfg.default_scope
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    with DefaultScope.overwrite_default_scope(scope):
        return registry.build(cfg.model)


def _configs_dir(package):
    return os.path.join(os.path.dirname(__import__(package).__file__), '.mim', 'configs')


def _upstream_config(path):
    """mmdet3d's or mmdet's own config of the same name, if it ships one."""
    name = os.path.basename(path)
    for package, folders in (('mmdet3d', MMDET3D_FOLDERS), ('mmdet', ('regnet',))):
        for folder in folders:
            candidate = os.path.join(_configs_dir(package), folder, name)
            if os.path.exists(candidate):
                return candidate
    return None


def test_every_mmdet3d_regnet_config_has_a_twin():
    root = _configs_dir('mmdet3d')
    upstream = {os.path.relpath(p, root) for p in glob.glob(f'{root}/*/*regnet*.py')}
    # Every file that names RegNet is among them (the others inherit from such a file).
    naming = set()
    for path in glob.glob(f'{root}/**/*.py', recursive=True):
        with open(path) as f:
            if 'RegNet' in f.read():
                naming.add(os.path.relpath(path, root))
    assert naming <= upstream
    assert {p.split('/')[0] for p in upstream} == set(MMDET3D_FOLDERS)
    assert len(upstream) == 14
    for rel in upstream:
        backbone = Config.fromfile(os.path.join(root, rel)).model.pts_backbone
        assert backbone.type == 'NoStemRegNet', rel
    assert {os.path.basename(p) for p in upstream} <= {os.path.basename(c) for c in CONFIGS}
    for extra in ('pointpillars_hv_regnet-3.2gf_fpn_sbn-all_8xb4-2x_nus-3d.py',
                  'pointpillars_hv_regnety-400mf_fpn_sbn-all_8xb4-2x_nus-3d.py',
                  'pointpillars_hv_regnety-1.6gf_fpn_sbn-all_8xb4-2x_nus-3d.py',
                  'retinanet_regnetx-800MF_fpn_1x_coco.py',
                  'mask-rcnn_regnetx-3.2GF_fpn_1x_coco.py'):
        assert f'configs/regnet/{extra}' in CONFIGS


@pytest.mark.slow
@pytest.mark.parametrize('path', [c for c in CONFIGS if _upstream_config(c)])
def test_same_network_as_upstream_config(path):
    ours, theirs = _build(_load(path)), _build(Config.fromfile(_upstream_config(path)))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(ours) == count(theirs)
    ours_keys = set(ours.state_dict())
    assert ours_keys == set(theirs.state_dict())  # their trained checkpoints load as they are


@pytest.mark.slow
@pytest.mark.parametrize('path', CONFIGS)
def test_config_builds_trains_and_predicts(path):
    cfg = _load(path)
    is_3d = cfg.default_scope == 'mmdet3d'
    # Initialise as a fresh run does (no pretrained download here), and keep NMS small:
    # score_thr 0 makes it run on the top anchors, whatever an untrained head scores.
    # A point-cloud config runs on a smaller range (the same network on a smaller canvas).
    (cfg.model.pts_backbone if is_3d else cfg.model.backbone).init_cfg = None
    if is_3d:
        shrink_range(cfg)
        cfg.model.test_cfg.pts.update(nms_pre=100, max_num=50, score_thr=0.0)
    else:
        cfg.model.test_cfg.get('rcnn', cfg.model.test_cfg).update(score_thr=0.0)
    torch.manual_seed(0)
    model = _build(cfg)
    model.init_weights()
    backbone = getattr(model, 'pts_backbone', None) or model.backbone
    assert isinstance(backbone, RegNet)
    check_neck_channels(model)
    batch = point_cloud_batch(cfg) if is_3d else image_batch(with_masks='mask' in path)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model.train()
        data = model.data_preprocessor(batch, True)
        losses = model(**data, mode='loss')
        total = sum(v.sum() if torch.is_tensor(v) else sum(x.sum() for x in v)
                    for k, v in losses.items() if 'loss' in k)
        assert torch.isfinite(total)
        total.backward()
        assert all(p.grad is not None for p in backbone.parameters() if p.requires_grad)
        model.eval()
        with torch.no_grad():
            results = model(**model.data_preprocessor(batch, False), mode='predict')
    assert len(results) == 1
    if is_3d:
        pred = results[0].pred_instances_3d
        assert 0 < len(pred.scores_3d) <= 50
        assert pred.bboxes_3d.tensor.shape[1] == cfg.model.pts_bbox_head.bbox_coder.get(
            'code_size', 7)
    else:
        pred = results[0].pred_instances
        assert len(pred.scores) > 0 and pred.bboxes.shape[1] == 4
        assert ('masks' in pred) == ('mask' in path)


def test_2d_configs_use_pycls_normalisation():
    for path in CONFIGS:
        cfg = _load(path)
        if cfg.default_scope == 'mmdet':
            pre = cfg.model.data_preprocessor
            assert pre.mean == [103.53, 116.28, 123.675] and pre.std == [57.375, 57.12, 58.395]
            assert pre.bgr_to_rgb is False


def test_wrong_neck_channels_named_by_check():
    cfg = _load('configs/regnet/pointpillars_hv_regnet-400mf_fpn_sbn-all_8xb4-2x_nus-3d.py')
    cfg.model.pts_neck.in_channels = [64, 160, 380]
    model = _build(cfg)
    with pytest.raises(ValueError, match=(
            r"pts_neck.in_channels=\[64, 160, 380\] does not match the channels that "
            r"pts_backbone \(RegNet 'regnetx_400mf', out_indices=\(1, 2, 3\)\) emits: "
            r"\[64, 160, 384\]. Set pts_neck.in_channels=\[64, 160, 384\]")):
        check_neck_channels(model)


def test_wrong_neck_channels_stop_a_runner_before_it_runs(tmp_path):
    from mmengine.runner import Runner
    cfg = _load('configs/regnet/retinanet_regnetx-800MF_fpn_1x_coco.py')
    cfg.model.neck.in_channels = [64, 128, 288, 670]
    cfg.model.backbone.init_cfg = None
    # The Runner makes its scope the current one; the context restores the previous.
    with DefaultScope.overwrite_default_scope('mmdet'):
        runner = Runner(model=cfg.model, work_dir=str(tmp_path),
                        custom_hooks=cfg.custom_hooks, default_scope='mmdet')
        with pytest.raises(ValueError, match=r'Set neck.in_channels=\[64, 128, 288, 672\]'):
            runner.call_hook('before_run')


def test_config_backbones_name_presets():
    for path in CONFIGS:
        cfg = _load(path)
        backbone = cfg.model.get('pts_backbone') or cfg.model.backbone
        assert arch_name(backbone.arch) is not None
