"""The preset table and the width rule, against pycls 0.1.1, timm, torchvision and the paper."""
from dataclasses import replace

import pytest
import timm
from timm.models.regnet import model_cfgs as timm_cfgs

from mmregnet import PRESETS, get_arch
from mmregnet.arch import ALIASES, ArchSpec, arch_name, timm_name

from conftest import ALL_PRESETS, pycls_anynet_kwargs
from library_nets import TORCHVISION_CHANGED, torchvision_params


def test_table_has_all_24_pycls_models_with_mmdet_spelling():
    assert len(PRESETS) == 24
    for name in ['regnetx_400mf', 'regnetx_800mf', 'regnetx_1.6gf', 'regnetx_3.2gf',
                 'regnetx_4.0gf', 'regnetx_6.4gf', 'regnetx_8.0gf', 'regnetx_12gf']:
        assert name in PRESETS
    sizes = ['200mf', '400mf', '600mf', '800mf', '1.6gf', '3.2gf', '4.0gf', '6.4gf',
             '8.0gf', '12gf', '16gf', '32gf']
    assert sorted(PRESETS) == sorted(f'regnet{f}_{s}' for f in 'xy' for s in sizes)


@pytest.mark.parametrize('name', ALL_PRESETS)
def test_stage_design_matches_pycls(name):
    expected = pycls_anynet_kwargs(name)
    design = get_arch(name).design()
    assert list(design.widths) == expected['ws']
    assert list(design.depths) == expected['ds']
    assert list(design.group_widths) == expected['gws']
    assert sum(design.depths) == PRESETS[name].depth
    assert all(b % g == 0 for b, g in zip(design.bottleneck_widths, design.group_widths))


@pytest.mark.parametrize('name', ALL_PRESETS)
def test_se_only_in_regnety(name):
    assert (PRESETS[name].se_ratio == 0.25) == name.startswith('regnety')


def test_published_examples():
    d = get_arch('regnetx_400mf').design()
    assert d.widths == (32, 64, 160, 384) and d.depths == (1, 2, 7, 12)
    assert get_arch('regnetx_8.0gf').design().group_widths == (80, 120, 120, 120)


def test_dict_roundtrip_and_name_lookup():
    spec = PRESETS['regnety_1.6gf']
    assert get_arch(spec.to_dict()) == spec
    assert arch_name(spec.to_dict()) == 'regnety_1.6gf'
    assert arch_name(dict(spec.to_dict(), depth=26)) is None
    assert 'se_ratio' not in PRESETS['regnetx_200mf'].to_dict()


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="unknown RegNet arch 'regnetx_401mf'.*regnetx_400mf"):
        get_arch('regnetx_401mf')


@pytest.mark.parametrize('field,value,rule', [
    ('w0', 20, 'multiple of 8'), ('w0', 0, 'multiple of 8'), ('wa', -1.0, '>= 0'),
    ('wm', 1.0, '> 1'), ('depth', 0, 'integer >= 1'), ('depth', 2.5, 'integer >= 1'),
    ('group_w', 0, 'integer >= 1'), ('bot_mul', 0, '> 0'), ('se_ratio', 1.5, r'\(0, 1\]'),
    ('wa', float('nan'), '>= 0'), ('width_rounding', 'timm', "'pycls' or 'torchvision'"),
])
def test_invalid_dict_names_field_and_rule(field, value, rule):
    arch = dict(PRESETS['regnetx_400mf'].to_dict(), **{field: value})
    with pytest.raises(ValueError, match=f"'{field}' must be .*{rule}.*got {value!r}"):
        get_arch(arch)


def test_missing_and_unknown_fields_are_named():
    arch = PRESETS['regnetx_400mf'].to_dict()
    del arch['group_w']
    arch['groups'] = 4
    with pytest.raises(ValueError, match=r"missing: \['group_w'\].*unknown: \['groups'\]"):
        get_arch(arch)


def test_wrong_type():
    with pytest.raises(TypeError, match='preset name or a dict, got int'):
        get_arch(400)


def test_spec_is_frozen():
    with pytest.raises(Exception):
        PRESETS['regnetx_400mf'].w0 = 32
    assert isinstance(PRESETS['regnetx_400mf'], ArchSpec)


def _timm_stages(name):
    """Stage widths, depths and group widths of timm's own model ``name`` (built on meta)."""
    net = timm.create_model(name, device='meta')
    stages = [getattr(net, f's{i}') for i in range(1, 5)]
    blocks = [s.b1 for s in stages]
    depths = tuple(sum(n.startswith('b') for n, _ in s.named_children()) for s in stages)
    return (tuple(b.conv3.conv.out_channels for b in blocks), depths,
            tuple(b.conv2.conv.in_channels // b.conv2.conv.groups for b in blocks))


@pytest.mark.parametrize('name', ALL_PRESETS)
def test_timm_names_are_aliases_with_timms_numbers_and_widths(name):
    alias = timm_name(name)
    assert ALIASES[alias] == name and alias in timm.list_models('regnet*')
    c = timm_cfgs[alias]
    assert get_arch(alias) is PRESETS[name] == ArchSpec(
        w0=c.w0, wa=c.wa, wm=c.wm, depth=c.depth, group_w=c.group_size, bot_mul=c.bottle_ratio,
        se_ratio=c.se_ratio or None)
    d = PRESETS[name].design()
    assert _timm_stages(alias) == (d.widths, d.depths, d.group_widths)
    assert arch_name(alias) == name  # the table's own spelling comes back


def test_timm_names_are_exactly_timms_24_pycls_models():
    sizes = ('002', '004', '006', '008', '016', '032', '040', '064', '080', '120', '160', '320')
    assert list(ALIASES) == [f'regnet{f}_{s}' for f in 'xy' for s in sizes]
    with pytest.raises(ValueError, match=r"unknown RegNet arch 'regnetx_640'.*timm's names: "
                                         r'regnetx_002, regnetx_004'):
        get_arch('regnetx_640')


@pytest.mark.parametrize('name', ALL_PRESETS)
def test_torchvision_rounding_is_torchvisions_own(name):
    params = torchvision_params(name)
    ours = replace(PRESETS[name], width_rounding='torchvision').design()
    assert (ours.widths, ours.depths, ours.group_widths) == (
        tuple(params.widths), tuple(params.depths), tuple(params.group_widths))
    changed = ours.widths != PRESETS[name].design().widths
    assert changed == (name in TORCHVISION_CHANGED)


@pytest.mark.parametrize('name', ['regnetx_004_tv', 'regnety_008_tv', 'regnety_080_tv'])
def test_timms_tv_models_have_torchvisions_rounding(name):
    d = replace(get_arch(name[:-3]), width_rounding='torchvision').design()
    assert _timm_stages(name) == (d.widths, d.depths, d.group_widths)


def test_a_timm_name_works_wherever_a_preset_name_does():
    import torch
    from mmregnet import RegNet, complexity, stage_channels
    assert complexity('regnety_016') == complexity('regnety_1.6gf')
    assert stage_channels('regnetx_004', (1, 2, 3)) == stage_channels('regnetx_400mf', (1, 2, 3))
    with torch.device('meta'):
        net = RegNet('regnety_032', out_indices=(3,))
    assert net.arch is PRESETS['regnety_3.2gf'] and net.out_channels == (1512,)
