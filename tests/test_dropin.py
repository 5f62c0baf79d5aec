"""Every upstream RegNet config takes mmregnet's backbone by changing one word.

The configs are found by globbing the ``.mim/configs`` that mmdet, mmdet3d and
mmpretrain install (every config whose model has their ``RegNet`` or
``NoStemRegNet``), not listed here. With only the backbone's ``type`` swapped
the backbone is ours, has the upstream backbone's state-dict keys, loads its
weights strictly and gives its outputs.
"""
import functools
import glob
import importlib
import os
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from torch.nn.modules.batchnorm import _BatchNorm

import mmregnet.models
from mmregnet.models import NoStemRegNet, RegNet

#: package -> (its class in the configs, the type that swaps it for ours, our class)
SWAPS = {'mmdet': ('RegNet', 'mmregnet.RegNet', RegNet),
         'mmdet3d': ('NoStemRegNet', 'mmregnet.NoStemRegNet', NoStemRegNet),
         'mmpretrain': ('RegNet', 'mmregnet.RegNet', RegNet)}
#: What mmdet 3.3.0, mmdet3d 1.4.0 and mmpretrain 1.2.0 ship.
EXPECTED_COUNTS = {'mmdet': 26, 'mmdet3d': 14, 'mmpretrain': 8}
BACKBONE_KEYS = ('backbone', 'pts_backbone', 'img_backbone')


def configs_dir(package):
    """Where ``package`` installs its configs."""
    return os.path.join(os.path.dirname(importlib.import_module(package).__file__),
                        '.mim', 'configs')


def _candidates(root, class_name):
    """Configs (not ``_base_`` parts) that name ``class_name`` or inherit, at any depth,
    from a file that does."""
    texts = {}
    for path in glob.glob(f'{root}/**/*.py', recursive=True):
        with open(path) as f:
            texts[path] = f.read()
    found = {p for p, t in texts.items() if re.search(rf"\b{class_name}\b", t)}
    grown = True
    while grown:  # a child names its base's file
        names = {os.path.basename(p) for p in found}
        more = {p for p, t in texts.items() if p not in found and any(n in t for n in names)}
        found |= more
        grown = bool(more)
    return sorted(p for p in found if '/_base_/' not in p)


def _backbone_key(cfg, class_name):
    keys = [k for k in BACKBONE_KEYS
            if isinstance(cfg.model.get(k), dict) and cfg.model[k].get('type') == class_name]
    return keys[0] if len(keys) == 1 else None


@functools.lru_cache(maxsize=None)
def upstream_backbones():
    """``{(package, path relative to its configs): backbone config}`` of every upstream
    RegNet config."""
    found = {}
    for package, (class_name, _, _) in SWAPS.items():
        root = configs_dir(package)
        for path in _candidates(root, class_name):
            cfg = Config.fromfile(path)
            key = _backbone_key(cfg, class_name)
            if key:
                found[package, os.path.relpath(path, root)] = cfg.model[key].to_dict()
    return found


def upstream_configs():
    """``(package, path relative to its configs)`` of every upstream RegNet config."""
    return tuple(upstream_backbones())


def _build(package, cfg):
    registry = importlib.import_module(f'{package}.registry').MODELS
    with DefaultScope.overwrite_default_scope(package):
        return registry.build(cfg)


def randomize(net, seed=0):
    """Non-trivial BN statistics and affine terms, and deformable-conv offsets, in place."""
    g = torch.Generator().manual_seed(seed)
    for name, m in net.named_modules():
        if isinstance(m, _BatchNorm):
            m.weight.data = torch.rand(m.weight.shape, generator=g) + 0.5
            m.bias.data = torch.rand(m.bias.shape, generator=g) - 0.5
            m.running_mean = torch.rand(m.running_mean.shape, generator=g) - 0.5
            m.running_var = torch.rand(m.running_var.shape, generator=g) + 0.5
        elif name.endswith('conv_offset'):  # zero at init: the conv would not deform
            m.weight.data = torch.randn(m.weight.shape, generator=g) * 0.05
            m.bias.data = torch.randn(m.bias.shape, generator=g) * 0.5
    return net


def assert_close_relative(ours, theirs, rtol=1e-4):
    """Same shapes, and every output within ``rtol`` of the reference's largest value."""
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape
        scale = float(b.abs().max())
        assert scale > 0
        assert float((a - b).abs().max()) <= rtol * scale


def test_the_glob_finds_every_upstream_regnet_config():
    counts = {p: sum(1 for q, _ in upstream_configs() if q == p) for p in SWAPS}
    assert counts == EXPECTED_COUNTS
    assert len(upstream_configs()) == 48


@functools.lru_cache(maxsize=None)
def _swap_checked(package, backbone_text):
    """Checks one upstream backbone config against its one-word swap (configs that share
    a backbone config share the check)."""
    class_name, swapped, ours_cls = SWAPS[package]
    theirs_cfg = next(b for b in upstream_backbones().values() if repr(b) == backbone_text)
    ours_cfg = dict(theirs_cfg, type=swapped)  # the one word
    torch.manual_seed(0)
    theirs = randomize(_build(package, theirs_cfg))
    theirs.eval()  # mmdet's ResNet.train() returns None: no chaining
    ours = _build(package, ours_cfg).eval()
    assert type(ours) is ours_cls
    assert type(theirs) is not ours_cls and not isinstance(theirs, RegNet)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict(), strict=True)
    channels = ours_cfg.get('stem_channels', 32) if package == 'mmdet3d' else 3
    x = torch.rand(1, channels, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    assert_close_relative(got, expected)  # mmpretrain's: the outputs it returns (its last)
    return True


@pytest.mark.slow
@pytest.mark.parametrize('package,rel', upstream_configs(),
                         ids=[f'{p}:{r}' for p, r in upstream_configs()])
def test_upstream_config_takes_our_backbone_by_its_type(package, rel):
    assert _swap_checked(package, repr(upstream_backbones()[package, rel]))


def test_dcn_and_caffe_style_are_among_what_is_covered():
    backbones = [b for (p, _), b in upstream_backbones().items() if p == 'mmdet']
    assert any(b.get('dcn') for b in backbones)
    assert all(b.get('style', 'pytorch') == 'pytorch' for b in backbones)
    assert len({repr(b) for b in upstream_backbones().values()}) >= 20


@pytest.mark.parametrize('arch', ['regnetx_400mf', 'regnetx_1.6gf'])
@pytest.mark.parametrize('kwargs', [dict(), dict(strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2),
                                                 out_indices=(1, 3))])
def test_caffe_style_is_mmdet_caffe_style(arch, kwargs):
    from mmdet.models.backbones import RegNet as MMDetRegNet
    from mmregnet.arch import PRESETS
    theirs = randomize(MMDetRegNet(PRESETS[arch].to_dict(), style='caffe', **kwargs))
    theirs.eval()
    kwargs = dict(kwargs, with_stem=True) if 'strides' in kwargs else kwargs
    ours = RegNet(arch, style='caffe', **kwargs).eval()
    pytorch_style = RegNet(arch, **kwargs).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    pytorch_style.load_state_dict(theirs.state_dict(), strict=True)
    assert ours.layer2[0].conv1.stride == (2, 2) and ours.layer2[0].conv2.stride == (1, 1)
    x = torch.rand(1, 3, 48, 40)
    with torch.no_grad():
        expected, got, other = theirs(x), ours(x), pytorch_style(x)
    assert_close_relative(got, expected)
    assert not torch.allclose(other[-1], expected[-1], rtol=1e-2)  # the style matters


def test_registry_names():
    from mmdet3d.models.backbones import NoStemRegNet as MMDet3DNoStemRegNet
    from mmdet3d.registry import MODELS as MMDET3D_MODELS
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
    assert MMDET3D_MODELS.get('mmregnet.NoStemRegNet') is NoStemRegNet
    assert MMDET_MODELS.get('mmregnet.NoStemRegNet') is NoStemRegNet
    assert MMDET3D_MODELS.get('NoStemRegNet') is MMDet3DNoStemRegNet
    assert mmregnet.models.MODELS.get('NoStemRegNet') is NoStemRegNet
    assert MMPRETRAIN_MODELS.get('mmregnet.RegNet') is RegNet
    assert MMPRETRAIN_MODELS.get('RegNet') is not RegNet


def test_mmdet_backbone_configs_build_as_plain_regnet_in_mmdet3d_scope():
    """In mmdet3d's scope plain 'RegNet' is ours: mmdet's arguments (style, dcn...) build."""
    mmdet = {repr(b): b for (p, _), b in upstream_backbones().items() if p == 'mmdet'}
    small = [b for b in mmdet.values() if b['arch'] in ('regnetx_400mf', 'regnetx_3.2gf')]
    assert any(b.get('dcn') for b in small)
    for backbone in small:
        assert type(_build('mmdet3d', backbone)) is RegNet


def test_mmpretrain_scope_gives_mmpretrain_defaults():
    cfg = dict(type='mmregnet.RegNet', arch='regnetx_400mf')
    in_pretrain = _build('mmpretrain', cfg)
    assert (in_pretrain.out_indices, in_pretrain.norm_eval) == ((3,), False)
    in_mmdet = _build('mmdet', cfg)
    assert (in_mmdet.out_indices, in_mmdet.norm_eval) == ((0, 1, 2, 3), True)
    said = _build('mmpretrain', dict(cfg, out_indices=(1, 3), norm_eval=True))
    assert (said.out_indices, said.norm_eval) == ((1, 3), True)
    assert RegNet('regnetx_400mf').out_indices == (0, 1, 2, 3)


def test_pretrained_is_mmdet_deprecated_init_cfg(tmp_path):
    src = RegNet('regnetx_200mf', zero_init_residual=False)
    src.init_weights()
    torch.save(src.state_dict(), tmp_path / 'w.pth')
    with pytest.warns(UserWarning, match='pretrained is deprecated'):
        net = RegNet('regnetx_200mf', pretrained=str(tmp_path / 'w.pth'))
    assert net.init_cfg == dict(type='Pretrained', checkpoint=str(tmp_path / 'w.pth'))
    net.init_weights()
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in src.state_dict().items())


def test_base_channels_and_nostem_in_channels_are_accepted_unused():
    a = RegNet('regnetx_200mf', base_channels=64)
    b = RegNet('regnetx_200mf')
    assert list(a.state_dict()) == list(b.state_dict())
    net = NoStemRegNet('regnetx_200mf', in_channels=3, stem_channels=16)
    assert net.in_channels == 16 and net.layer1[0].conv1.in_channels == 16
    assert not hasattr(net, 'conv1')


def _one_line_refusal(build, *words):
    with pytest.raises(ValueError) as error:
        build()
    message = str(error.value)
    assert '\n' not in message
    for word in words:
        assert word in message, (word, message)
    return message


@pytest.mark.parametrize('kwargs,words', [
    (dict(deep_stem=True), ['deep_stem=True', 'supported: False']),
    (dict(avg_down=True), ['avg_down=True', 'supported: False']),
    (dict(plugins=[dict(cfg=dict(type='ContextBlock', ratio=1. / 16), position='after_conv3')]),
     ['plugins=[', 'ContextBlock', 'supported: None']),
    (dict(conv_cfg=dict(type='ConvWS')), ["conv_cfg={'type': 'ConvWS'}", 'supported: None or']),
    (dict(style='tf'), ["style must be one of 'pytorch', 'caffe'", "got 'tf'"]),
    (dict(dcn=dict(type='DCNv3')), ['dcn must be', "'DCN' or 'DCNv2'", "got {'type': 'DCNv3'}"]),
    (dict(dcn=dict(type='DCNv2', fallback_on_stride=True)),
     ['fallback_on_stride=True', 'supported: False']),
    (dict(dcn=dict(type='DCNv2'), stage_with_dcn=(True, True)),
     ['stage_with_dcn must give True or False for each of', '4 stages', '(True, True)']),
    (dict(stage_with_dcn=(0, 1, 1, 1)), ['stage_with_dcn must give True or False',
                                         '(0, 1, 1, 1)']),
    (dict(dcn=dict(type='DCNv2', deform_groups=0)), ['dcn deform_groups', 'got 0']),
    (dict(pretrained=3), ['pretrained must be a checkpoint path or None, got 3']),
    (dict(pretrained='a.pth', init_cfg=dict(type='Pretrained', checkpoint='b.pth')),
     ['give init_cfg or pretrained, not both', "'a.pth'", "'b.pth'"]),
    (dict(base_channels=0), ['base_channels must be a positive integer', 'got 0']),
    (dict(with_stem='yes'), ["with_stem must be True or False, got 'yes'"]),
])
def test_refused_options_name_option_value_and_what_is_supported(kwargs, words):
    _one_line_refusal(lambda: RegNet('regnetx_400mf', **kwargs), *words)


def test_nostem_refuses_with_stem():
    _one_line_refusal(lambda: NoStemRegNet('regnetx_400mf', with_stem=True),
                      'NoStemRegNet has no stem', 'with_stem=True', 'use RegNet')


def test_mmdet3d_stemless_arguments_given_to_regnet_name_what_was_meant():
    """mmdet3d's NoStemRegNet arguments under our plain RegNet fail at build, not at forward."""
    cfg = Config.fromfile(os.path.join(
        configs_dir('mmdet3d'), 'regnet',
        'pointpillars_hv_regnet-400mf_fpn_sbn-all_8xb4-2x_nus-3d.py')).model.pts_backbone
    for type_ in ('RegNet', 'mmregnet.RegNet'):
        _one_line_refusal(lambda: _build('mmdet3d', dict(cfg.to_dict(), type=type_)),
                          'strides[0]=1', 'stem_channels=64', "type='mmregnet.NoStemRegNet'",
                          'with_stem=False, in_channels=64', 'with_stem=True')
    said = _build('mmdet3d', dict(cfg.to_dict(), type='RegNet', with_stem=True))
    assert said.with_stem and said.strides[0] == 1


def test_deploy_refuses_deformable_convs():
    from mmregnet.deploy import switch_to_deploy
    dcn = dict(type='DCNv2', deform_groups=1)
    net = RegNet('regnetx_200mf', dcn=dcn, stage_with_dcn=(False, True, True, True))
    for deploy in (net.switch_to_deploy, lambda: switch_to_deploy(net)):
        _one_line_refusal(deploy, 'switch_to_deploy', '12 deformable ones', 'dcn=')
        assert net.deploy is False and isinstance(net.norm1, _BatchNorm)  # nothing folded
        assert all(isinstance(b.get_submodule(b.norm1_name), _BatchNorm) for b in net.layer1)
    # mmdet's default stage_with_dcn builds no deformable conv: nothing to refuse.
    assert RegNet('regnetx_200mf', dcn=dcn).switch_to_deploy().deploy


def test_nostem_stem_channels_are_checked_under_their_name():
    _one_line_refusal(lambda: NoStemRegNet('regnetx_200mf', stem_channels=0), 'stem_channels',
                      'got 0')


def test_open_mmlab_weights_of_another_arch_are_refused_at_init():
    init = dict(type='Pretrained', checkpoint='open-mmlab://regnetx_400mf')
    net = NoStemRegNet('regnety_400mf', stem_channels=64, strides=(1, 2, 2, 2), init_cfg=init)
    _one_line_refusal(net.init_weights, "'open-mmlab://regnetx_400mf' holds regnetx_400mf",
                      'is regnety_400mf', 'init_cfg=None', 'allow_partial=True')


# The override a user writes first: RegNetY over a shipped mmdet3d config ------------------

OVERRIDE_BASE = 'mmdet3d::regnet/pointpillars_hv_regnet-400mf_fpn_sbn-all_8xb4-2x_nus-3d.py'
#: A RegNetY that is no preset.
CUSTOM_Y = dict(w0=32, wa=24.0, wm=2.2, depth=12, group_w=8, bot_mul=1.0, se_ratio=0.25)


def _override(tmp_path, arch, neck_channels, init_cfg_none):
    """The config file a user writes: type and arch of the backbone, the neck's inputs."""
    extra = ', init_cfg=None' if init_cfg_none else ''
    path = tmp_path / 'override.py'
    path.write_text(
        f"_base_ = ['{OVERRIDE_BASE}']\n"
        "custom_imports = dict(imports=['mmregnet'], allow_failed_imports=False)\n"
        f"model = dict(pts_backbone=dict(type='mmregnet.NoStemRegNet', arch={arch!r}{extra}),\n"
        f"             pts_neck=dict(in_channels={neck_channels!r}))\n")
    return Config.fromfile(str(path))


@pytest.mark.parametrize('arch,channels', [
    ('regnety_400mf', [104, 208, 440]),
    (CUSTOM_Y, [72, 152, 344]),
], ids=['regnety_400mf', 'arch-dict'])
def test_override_builds_and_runs_a_pseudo_image(tmp_path, arch, channels):
    from mmregnet import stage_channels
    assert stage_channels(arch, (1, 2, 3)) == channels
    cfg = _override(tmp_path, arch, channels, init_cfg_none=False)  # as the issue writes it
    assert cfg.model.pts_backbone.style == 'pytorch'  # the base's arguments stay
    backbone = _build('mmdet3d', cfg.model.pts_backbone)
    assert type(backbone) is NoStemRegNet and backbone.out_channels == tuple(channels)
    with torch.no_grad():
        outs = backbone.eval()(torch.rand(1, 64, 32, 32))
    assert [tuple(o.shape) for o in outs] == [(1, c, 32 // s, 32 // s)
                                              for c, s in zip(channels, (2, 4, 8))]
    # The base's ImageNet weights are RegNetX-400MF's: refused, not loaded half-random.
    _one_line_refusal(backbone.init_weights, 'holds regnetx_400mf', 'init_cfg=None')


@pytest.mark.slow
@pytest.mark.parametrize('arch,channels', [
    ('regnety_400mf', [104, 208, 440]),
    (CUSTOM_Y, [72, 152, 344]),
], ids=['regnety_400mf', 'arch-dict'])
def test_override_detector_takes_a_training_step(tmp_path, arch, channels):
    from detector_inputs import point_cloud_batch, shrink_range

    from mmregnet import check_neck_channels
    cfg = shrink_range(_override(tmp_path, arch, channels, init_cfg_none=True))
    torch.manual_seed(0)
    model = _build('mmdet3d', cfg.model)
    model.init_weights()
    assert type(model.pts_backbone) is NoStemRegNet
    check_neck_channels(model)
    batch = point_cloud_batch(cfg)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.01)
    before = {k: v.clone() for k, v in model.pts_backbone.state_dict().items()}
    with DefaultScope.overwrite_default_scope('mmdet3d'):
        model.train()
        losses = model(**model.data_preprocessor(batch, True), mode='loss')
    total = sum(v.sum() if torch.is_tensor(v) else sum(x.sum() for x in v)
                for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    assert all(p.grad is not None for p in model.pts_backbone.parameters())
    optimizer.step()
    after = model.pts_backbone.state_dict()
    # Residual branches start at zero (zero_init_residual), so their last norm moves first.
    for key in ('layer1.0.downsample.0.weight', 'layer3.0.bn3.weight'):
        assert not torch.equal(before[key], after[key]), key
