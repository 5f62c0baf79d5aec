"""The RegNet backbone: shapes, training behaviour, mmdet parity, registries, errors."""
import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from mmregnet import PRESETS, RegNet, get_arch

from conftest import ALL_PRESETS, X_PRESETS
from norms import randomize_norms


@pytest.mark.parametrize('name', ALL_PRESETS)
def test_output_shapes_and_out_channels(name, build):
    widths = get_arch(name).design().widths
    net = build(name).eval()
    assert net.out_channels == widths and net.out_strides == (4, 8, 16, 32)
    outs = net(torch.rand(1, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [
        (1, c, 64 // s, 96 // s) for c, s in zip(widths, net.out_strides)]

    bev = build(name, with_stem=False).eval()
    assert bev.out_channels == widths[1:] and bev.out_strides == (2, 4, 8)
    outs = bev(torch.rand(1, 64, 32, 40))
    assert [tuple(o.shape) for o in outs] == [
        (1, c, 32 // s, 40 // s) for c, s in zip(widths[1:], bev.out_strides)]


@pytest.mark.parametrize('name', ALL_PRESETS)
def test_gradients_reach_every_parameter(name, build):
    net = build(name, with_stem=False).train()
    sum(o.square().mean() for o in net(torch.rand(2, 64, 16, 16))).backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


def _frozen_state(net, prefixes):
    return {k: v.clone() for k, v in net.state_dict().items() if k.startswith(prefixes)}


@pytest.mark.parametrize('name', ALL_PRESETS)
@pytest.mark.parametrize('with_stem', [True, False])
def test_frozen_stages_stay_frozen(name, with_stem, build):
    src = build(name, with_stem)
    kwargs = dict(with_stem=True) if with_stem else dict(
        with_stem=False, in_channels=64, strides=(1, 2, 2, 2), out_indices=(1, 2, 3))
    net = RegNet(name, frozen_stages=2, norm_eval=False, **kwargs)
    net.load_state_dict(src.state_dict())
    assert net.train() is net
    frozen = ('conv1', 'bn1', 'layer1.', 'layer2.')
    before = _frozen_state(net, frozen)
    for pname, p in net.named_parameters():
        assert p.requires_grad == (not pname.startswith(frozen)), pname
    for mname, m in net.named_modules():
        if isinstance(m, _BatchNorm):
            assert m.training == (not mname.startswith(frozen)), mname
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    x = torch.rand(2, *((3, 32, 32) if with_stem else (64, 16, 16)))
    sum(o.mean() for o in net(x)).backward()
    opt.step()
    after = _frozen_state(net, frozen)
    assert before.keys() == after.keys() and len(before) > 0
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_frozen_stem_only_and_all_stages():
    net = RegNet('regnetx_200mf', frozen_stages=0).train()
    assert not net.conv1.weight.requires_grad and not net.norm1.training
    assert net.layer1[0].conv1.weight.requires_grad
    net = RegNet('regnetx_200mf', with_stem=False, in_channels=8, frozen_stages=4).train()
    assert not any(p.requires_grad for p in net.parameters())


@pytest.mark.parametrize('name', ALL_PRESETS)
def test_norm_eval_keeps_statistics(name, build):
    src = build(name, with_stem=False)
    net = RegNet(name, with_stem=False, in_channels=64, strides=(1, 2, 2, 2),
                 out_indices=(1, 2, 3), norm_eval=True)
    net.load_state_dict(src.state_dict())
    net.train()
    assert all(not m.training for m in net.modules() if isinstance(m, _BatchNorm))
    assert net.layer1.training  # only the norms are in eval mode
    stats = {k: v.clone() for k, v in net.state_dict().items() if 'running' in k}
    net(torch.rand(2, 64, 16, 16))
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in stats.items())


@pytest.mark.parametrize('name', ALL_PRESETS)
def test_with_cp_same_outputs_and_gradients(name, build):
    ref = build(name, with_stem=False).train()
    cp_net = RegNet(name, with_stem=False, in_channels=64, strides=(1, 2, 2, 2),
                    out_indices=(1, 2, 3), norm_eval=False, with_cp=True).train()
    cp_net.load_state_dict(ref.state_dict())
    x = torch.rand(2, 64, 16, 16, requires_grad=True)
    outs = [net(x) for net in (ref, cp_net)]
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b)
    for net, out in zip((ref, cp_net), outs):
        sum(o.square().sum() for o in out).backward()
    grads = [{k: p.grad for k, p in net.named_parameters()} for net in (ref, cp_net)]
    assert grads[0].keys() == grads[1].keys()
    for k in grads[0]:
        torch.testing.assert_close(grads[0][k], grads[1][k], rtol=1e-4, atol=1e-5, msg=k)


def _assert_loads_strictly_with_equal_outputs(theirs, ours, x):
    theirs.init_weights()
    randomize_norms(theirs)  # a mis-mapped key then changes the outputs
    ours.load_state_dict(theirs.state_dict(), strict=True)
    theirs.eval()  # mmdet's ResNet.train() returns None, so no chaining here
    with torch.no_grad():
        outs = list(zip(theirs(x), ours.eval()(x)))
    assert len(outs) == len(ours.out_indices)
    for a, b in outs:
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize('name', X_PRESETS)
def test_mmdet_regnet_state_dict_loads_strictly_with_equal_outputs(name):
    from mmdet.models.backbones import RegNet as MMDetRegNet
    _assert_loads_strictly_with_equal_outputs(
        MMDetRegNet(PRESETS[name].to_dict()), RegNet(name), torch.rand(1, 3, 64, 64))


@pytest.mark.slow
@pytest.mark.parametrize('name', ['regnetx_400mf', 'regnetx_1.6gf', 'regnetx_3.2gf'])
def test_mmdet3d_nostem_state_dict_loads_strictly_with_equal_outputs(name):
    from mmdet3d.models.backbones import NoStemRegNet
    _assert_loads_strictly_with_equal_outputs(
        NoStemRegNet(PRESETS[name].to_dict(), stem_channels=64, base_channels=64,
                     strides=(1, 2, 2, 2), out_indices=(1, 2, 3)),
        RegNet(name, with_stem=False, in_channels=64, strides=(1, 2, 2, 2),
               out_indices=(1, 2, 3)),
        torch.rand(1, 64, 48, 48))


@pytest.mark.parametrize('name', [n for n in ALL_PRESETS if n.startswith('regnety')])
def test_regnety_keys_are_mmdet_keys_plus_se(name):
    from mmdet.models.backbones import RegNet as MMDetRegNet
    arch = PRESETS[name].to_dict()
    del arch['se_ratio']
    theirs = set(MMDetRegNet(arch).state_dict())
    ours = set(RegNet(name).state_dict())
    assert theirs < ours
    assert all('.se.fc' in k for k in ours - theirs)


@pytest.mark.parametrize('norm_cfg,scope,norm_name', [
    (dict(type='BN'), 'mmdet3d', 'bn1'),
    (dict(type='SyncBN'), 'mmdet3d', 'bn1'),
    (dict(type='naiveSyncBN2d', eps=1e-3, momentum=0.01), 'mmdet3d', 'bn1'),
    (dict(type='GN', num_groups=8), 'mmdet', 'gn1'),
])
def test_norm_cfgs_build_through_the_registry(norm_cfg, scope, norm_name):
    from mmengine.registry import DefaultScope
    from mmdet3d.registry import MODELS
    with DefaultScope.overwrite_default_scope(scope):
        net = MODELS.build(dict(type='mmregnet.RegNet', arch='regnetx_200mf',
                                norm_cfg=norm_cfg))
    assert isinstance(net, RegNet) and hasattr(net.layer1[0], norm_name)
    with torch.no_grad():
        assert net.eval()(torch.rand(1, 3, 32, 32))[-1].shape == (1, 368, 1, 1)


def test_registries_keep_each_library_own_class():
    from mmdet.models.backbones import RegNet as MMDetRegNet
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmdet3d.models.backbones import NoStemRegNet
    from mmdet3d.registry import MODELS as MMDET3D_MODELS
    from mmengine.registry import DefaultScope
    import mmregnet.registry
    assert MMDET3D_MODELS.get('RegNet') is RegNet
    assert MMDET3D_MODELS.get('NoStemRegNet') is NoStemRegNet
    assert MMDET_MODELS.get('RegNet') is MMDetRegNet
    assert MMDET_MODELS.get('mmregnet.RegNet') is RegNet
    assert MMDET3D_MODELS.get('mmdet.RegNet') is MMDetRegNet
    assert mmregnet.registry.MODELS.get('RegNet') is RegNet
    with DefaultScope.overwrite_default_scope('mmdet'):
        assert isinstance(MMDET_MODELS.build(dict(type='RegNet', arch='regnetx_400mf')),
                          MMDetRegNet)


def test_zero_init_residual_and_pretrained(tmp_path):
    net = RegNet('regnetx_200mf')
    net.init_weights()
    assert all(float(b.norm3.weight.abs().sum()) == 0 for b in net.modules()
               if hasattr(b, 'norm3_name'))
    src = RegNet('regnetx_200mf', zero_init_residual=False)
    src.init_weights()
    torch.save(src.state_dict(), tmp_path / 'w.pth')
    loaded = RegNet('regnetx_200mf',
                    init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'w.pth')))
    loaded.init_weights()
    for k, v in src.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k


@pytest.mark.parametrize('kwargs,message', [
    (dict(arch='regnetx_4000mf'), "unknown RegNet arch 'regnetx_4000mf'; expected one of: "
                                  "regnetx_200mf, regnetx_400mf"),
    (dict(arch=dict(w0=24, wa=24.48, wm=0.5, depth=22, group_w=16, bot_mul=1.0)),
     "'wm' must be a number > 1, got 0.5"),
    (dict(arch='regnetx_400mf', out_indices=(1, 4)),
     r'out_indices must be increasing stage indices in 0..3 \(the arch has 4 stages\), '
     r'got \(1, 4\)'),
    (dict(arch='regnetx_400mf', out_indices=(3, 1)), r'increasing .*got \(3, 1\)'),
    (dict(arch='regnetx_400mf', out_indices=(1, 1)), r'increasing .*got \(1, 1\)'),
    (dict(arch='regnetx_400mf', out_indices=()), 'out_indices must be'),
    (dict(arch='regnetx_400mf', frozen_stages=5),
     r'frozen_stages must be an integer in -1..4 .*got 5'),
    (dict(arch='regnetx_400mf', frozen_stages=-2), 'frozen_stages must be'),
    (dict(arch='regnetx_400mf', strides=(1, 2, 2)),
     r"strides must give a positive integer for each of the arch's 4 stages, got \(1, 2, 2\)"),
    (dict(arch='regnetx_400mf', dilations=(1, 1, 0, 1)), 'dilations must give'),
    (dict(arch='regnetx_400mf', in_channels=0), 'in_channels must be a positive integer'),
])
def test_bad_arguments_fail_at_build_with_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RegNet(**kwargs)


def test_bad_arch_through_mmdet3d_registry_names_valid_archs():
    from mmdet3d.registry import MODELS
    with pytest.raises(ValueError, match='regnetx_400mf'):
        MODELS.build(dict(type='RegNet', arch='regnetx_4000mf'))


@pytest.mark.parametrize('shape,expected', [
    ((1, 64, 32, 32), r'expects input of shape \(N, 3, H, W\) \(in_channels=3\), '
                      r'got \(1, 64, 32, 32\)'),
    ((3, 32, 32), r'got \(3, 32, 32\)'),
])
def test_wrong_input_channels_name_both_numbers(shape, expected):
    with pytest.raises(ValueError, match=expected):
        RegNet('regnetx_200mf')(torch.rand(*shape))
