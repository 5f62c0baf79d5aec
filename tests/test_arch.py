"""The preset table and the width rule, against pycls 0.1.1 and the paper's numbers."""
import pytest

from mmregnet import PRESETS, get_arch
from mmregnet.arch import ArchSpec, arch_name

from conftest import ALL_PRESETS, pycls_anynet_kwargs


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
