"""The backbone's deploy form: folded norms, channels-last, compiled and exported paths equal
the eval model.

Every BatchNorm gets random statistics and affine parameters first, so that a
fold which ignored any of them would change the outputs.
"""
import io
import os

import pytest
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmregnet import RegNet
from mmregnet.deploy import export_onnx, fold_bn, fuse_conv_bn, trace

from conftest import ALL_PRESETS
from norms import randomize_norms

RTOL = 1e-4  # of the largest output magnitude
INPUT = {True: (2, 3, 32, 32), False: (2, 64, 16, 16)}


def _randomize_norms(net):
    return randomize_norms(net).eval()


def _assert_close(expected, actual, what):
    assert len(expected) == len(actual), what
    for i, (e, a) in enumerate(zip(expected, actual)):
        a = torch.as_tensor(a)
        assert tuple(e.shape) == tuple(a.shape), f'{what}: output {i} shape'
        err = (e - a).abs().max().item()
        assert err <= RTOL * e.abs().max().item(), f'{what}: output {i} differs by {err}'


def _pair(build, name, with_stem):
    """An eval-mode backbone with random norms, its outputs on a fixed input, its deployed copy."""
    net = _randomize_norms(build(name, with_stem))
    x = torch.randn(*INPUT[with_stem], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = net(x)
    return x, expected, net.switch_to_deploy()


@pytest.mark.parametrize('with_stem', [True, False])
@pytest.mark.parametrize('name', ALL_PRESETS)
def test_deploy_equals_eval_without_batchnorm(name, with_stem, build):
    x, expected, net = _pair(build, name, with_stem)
    assert net.deploy and not net.training
    assert not any(isinstance(m, _BatchNorm) for m in net.modules())
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert all(m.bias is not None for m in convs)
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    x_copy = x.clone()
    with torch.no_grad():
        outs = net(x)
        _assert_close(expected, outs, 'deploy')
        # The training module's forward on channels-last weights: channels-last outputs.
        assert all(o.is_contiguous(memory_format=torch.channels_last) for o in outs)
        _assert_close(expected, net(x.contiguous(memory_format=torch.channels_last)), 'cl in')
    assert torch.equal(x, x_copy)
    with torch.enable_grad():
        _assert_close(expected, [o.detach() for o in net(x)], 'deploy under autograd')


@pytest.mark.parametrize('name', ALL_PRESETS)
def test_torchscript_trace_and_freeze_equal_eval(name, build):
    x, expected, net = _pair(build, name, with_stem=True)
    traced = trace(net, x)
    with torch.no_grad():
        _assert_close(expected, traced(x), 'traced')
        _assert_close(expected, torch.jit.freeze(traced)(x), 'frozen')


@pytest.mark.parametrize('name', ALL_PRESETS)
def test_onnx_export_runs_equal_in_onnxruntime(name, build, tmp_path):
    pytest.importorskip('onnx')
    ort = pytest.importorskip('onnxruntime')
    x, expected, net = _pair(build, name, with_stem=False)
    path = export_onnx(net, x, str(tmp_path / 'regnet.onnx'), output_names=['c2', 'c3', 'c4'])
    assert [p.name for p in tmp_path.iterdir()] == ['regnet.onnx']  # no temporary left
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    assert [o.name for o in session.get_outputs()] == ['c2', 'c3', 'c4']
    _assert_close(expected, session.run(None, {'input': x.numpy()}), 'onnxruntime')
    bigger = torch.randn(1, 64, 24, 40)  # the dynamic axes really are dynamic
    with torch.no_grad():
        _assert_close(net(bigger), session.run(None, {'input': bigger.numpy()}), 'dynamic')


# Inductor takes 25-60 s per preset on these 2 shared cores, so one preset: a
# RegNetY (SE units, every block kind) without the stem (the PointPillars path).
@pytest.mark.slow
def test_torch_compile_equals_eval_and_keeps_the_input_check(build):
    x, expected, net = _pair(build, 'regnety_200mf', with_stem=False)
    compiled = torch.compile(net)
    with torch.no_grad():
        _assert_close(expected, compiled(x), 'compiled')
        with pytest.raises(ValueError, match='expects input of shape'):
            compiled(torch.randn(1, 5, 16, 16))


def test_switch_is_one_way_idempotent_and_keeps_the_input_check(build):
    net = _randomize_norms(build('regnety_400mf', with_stem=True))
    assert net.deploy is False
    assert net.switch_to_deploy() is net
    state = {k: v.clone() for k, v in net.state_dict().items()}
    assert not any('bn' in k or 'downsample.1' in k for k in state)
    assert 'conv1.bias' in state and 'layer1.0.conv2.bias' in state
    assert 'layer1.0.downsample.0.bias' in state and 'layer1.0.se.fc1.bias' in state
    net.switch_to_deploy()  # a second call must not fold again
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    for bad in (torch.randn(1, 4, 16, 16), torch.randn(3, 16, 16)):
        with pytest.raises(ValueError, match=r'\(N, 3, H, W\)'):
            net(bad)
    other = RegNet('regnety_400mf').switch_to_deploy()
    other.load_state_dict(net.state_dict())  # a deployed checkpoint reloads strictly
    x = torch.randn(1, 3, 32, 32)
    buf = io.BytesIO()
    torch.jit.save(trace(net, x), buf)
    buf.seek(0)
    with torch.no_grad():
        _assert_close(net(x), torch.jit.load(buf)(x), 'TorchScript saved and loaded')


def test_deploy_forward_is_the_training_modules_forward(build):
    # No deploy dispatch: a deployed RegNet runs RegNet.forward over its own
    # (folded) modules, so weights moved back to NCHW give NCHW outputs.
    x, expected, net = _pair(build, 'regnetx_400mf', with_stem=True)
    net.to(memory_format=torch.contiguous_format)
    with torch.no_grad():
        outs = net(x)
    _assert_close(expected, outs, 'NCHW weights')
    assert all(o.is_contiguous() for o in outs)


def test_group_norm_is_kept_and_outputs_unchanged():
    net = RegNet('regnetx_200mf', norm_cfg=dict(type='GN', num_groups=8)).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = net(x)
        outs = net.switch_to_deploy()(x)
    assert sum(isinstance(m, nn.GroupNorm) for m in net.modules()) > 0
    _assert_close(expected, outs, 'GN')


@pytest.mark.parametrize('conv', [
    nn.Conv2d(6, 8, 3, padding=2, dilation=2, groups=2, bias=False),
    nn.Conv2d(6, 8, 1, stride=2, bias=True),
    nn.ConvTranspose2d(6, 8, 2, stride=2, bias=False),
])
@pytest.mark.parametrize('affine', [True, False])
def test_fold_bn_equals_conv_then_norm_and_leaves_inputs(conv, affine):
    norm = _randomize_norms(nn.BatchNorm2d(8, eps=1e-3)) if affine else nn.BatchNorm2d(
        8, affine=False).eval()
    norm.running_var.uniform_(0.5, 2.0)
    before = [t.clone() for t in list(conv.parameters()) + list(norm.buffers())]
    x = torch.randn(2, 6, 9, 9)
    with torch.no_grad():
        expected = norm(conv(x))
        folded = fold_bn(conv, norm)
        _assert_close([expected], [folded(x)], 'folded')
    assert type(folded) is type(conv) and folded.bias is not None
    assert all(torch.equal(a, b) for a, b in zip(
        before, list(conv.parameters()) + list(norm.buffers())))


@pytest.mark.parametrize('conv,norm,error,message', [
    (nn.Conv2d(4, 8, 1), nn.GroupNorm(2, 8), TypeError, 'only a BatchNorm folds.*GroupNorm'),
    (nn.Linear(4, 8), nn.BatchNorm2d(8), TypeError, 'nn.Conv2d or nn.ConvTranspose2d.*Linear'),
    (nn.Conv2d(4, 8, 1), nn.BatchNorm2d(6), ValueError, '6 channels.*8 output channels'),
    (nn.Conv2d(4, 8, 1), nn.BatchNorm2d(8, track_running_stats=False), ValueError,
     'without running statistics'),
    (nn.ConvTranspose2d(4, 8, 2, groups=2), nn.BatchNorm2d(8), TypeError, 'groups=2'),
])
def test_fold_bn_rejects_what_cannot_fold(conv, norm, error, message):
    with pytest.raises(error, match=message):
        fold_bn(conv, norm)


def test_fuse_conv_bn_folds_fpn_and_second_fpn_necks():
    from mmdet3d.registry import MODELS
    from mmengine.registry import DefaultScope
    necks = [
        (dict(type='mmdet.FPN', in_channels=[16, 32, 64], out_channels=24, num_outs=3,
              norm_cfg=dict(type='BN'), act_cfg=dict(type='ReLU')), 6),
        (dict(type='SECONDFPN', in_channels=[16, 32, 64], out_channels=[8, 8, 8],
              upsample_strides=[1, 2, 4]), 3),
    ]
    feats = [torch.randn(1, c, s, s) for c, s in ((16, 16), (32, 8), (64, 4))]
    for cfg, num_norms in necks:
        with DefaultScope.overwrite_default_scope('mmdet3d'):  # whatever earlier tests set
            neck = _randomize_norms(MODELS.build(cfg))
        with torch.no_grad():
            expected = neck(feats)
            assert fuse_conv_bn(neck) == num_norms
            _assert_close(expected, neck(feats), cfg['type'])
        assert not any(isinstance(m, _BatchNorm) for m in neck.modules())


NUS_400MF = os.path.join(os.path.dirname(__file__), '..', 'configs', 'regnet',
                         'pointpillars_hv_regnet-400mf_fpn_sbn-all_8xb4-2x_nus-3d.py')


def test_importing_deploy_loads_neither_onnxruntime_nor_mmdet3d():
    import subprocess
    import sys
    code = ('import sys, mmregnet, mmregnet.deploy; '
            "heavy = [m for m in ('onnxruntime', 'onnx', 'mmdet3d') if m in sys.modules]; "
            'assert not heavy, heavy; '
            'from mmregnet.deploy import OnnxDetector, switch_detector_to_deploy, switch_to_deploy;'
            "assert 'onnxruntime' not in sys.modules")
    root = os.path.join(os.path.dirname(__file__), '..')
    result = subprocess.run([sys.executable, '-c', code], cwd=root, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_reference_config_and_generated_points_follow_the_config():
    import mmdet3d
    from mmengine.config import Config

    from mmregnet.benchmark.detector import reference_backbone_cfg
    from mmregnet.deploy.export import random_points
    from mmregnet.deploy.configs import load_detector_config, point_dims
    cfg = load_detector_config(NUS_400MF)
    ref = reference_backbone_cfg(dict(cfg.model.pts_backbone))
    # mmdet3d's own config of this detector is the oracle.
    theirs = Config.fromfile(os.path.join(os.path.dirname(mmdet3d.__file__), '.mim', 'configs',
                                          'regnet', os.path.basename(NUS_400MF)))
    for key, value in theirs.model.pts_backbone.items():
        if key != 'init_cfg':
            assert ref[key] == (tuple(value) if isinstance(value, list) else value), key
    assert reference_backbone_cfg(dict(cfg.model.pts_backbone, arch='regnety_400mf')) is None
    with pytest.raises(ValueError, match="mmregnet's RegNet, got type='SECOND'"):
        reference_backbone_cfg(dict(type='SECOND'))
    pts = random_points(cfg, 1000)
    lo, hi = cfg.model.data_preprocessor.voxel_layer.point_cloud_range[:3], \
        cfg.model.data_preprocessor.voxel_layer.point_cloud_range[3:]
    assert pts.shape == (1000, point_dims(cfg))
    assert (pts[:, :3] >= torch.tensor(lo)).all() and (pts[:, :3] <= torch.tensor(hi)).all()


def test_percentiles_match_numpy_and_bad_timing_arguments_fail():
    import numpy as np

    from mmregnet.benchmark.timing import percentile, time_interleaved
    samples = [0.3, 0.1, 0.7, 0.2, 0.9, 0.5]
    for q in (0, 10, 50, 90, 99, 100):
        assert percentile(samples, q) == pytest.approx(np.percentile(samples, q))
    calls = []
    times = time_interleaved({'a': lambda: calls.append('a'), 'b': lambda: calls.append('b')},
                             reps=3, warmup=1)
    assert calls == ['a', 'b', 'a', 'b', 'b', 'a', 'a', 'b']  # warm-up, then rotating order
    assert {k: len(v) for k, v in times.items()} == {'a': 3, 'b': 3}
    with pytest.raises(ValueError, match='reps >= 1'):
        time_interleaved({'a': lambda: None}, reps=0)


@pytest.mark.slow
def test_fresh_process_returns_the_result_and_names_the_childs_error():
    import math
    import os

    from mmregnet.benchmark.isolate import in_fresh_process
    assert in_fresh_process(math.factorial, 5) == 120
    assert in_fresh_process(os.getpid) != os.getpid()
    with pytest.raises(RuntimeError, match='factorial failed in its child process: ValueError'):
        in_fresh_process(math.factorial, -1)
