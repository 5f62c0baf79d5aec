"""Reading the arch off shapes, and finding arch dicts that reproduce given widths."""
import pytest
import torch

from mmregnet import PRESETS, RegNet, get_arch
from mmregnet.convert import ConversionError, ObservedArch, fit_arch, read_arch, resolve_arch

from conftest import ALL_PRESETS
from library_nets import TORCHVISION_CHANGED, torchvision_params


def observed(widths, depths, group_widths, se_ratio, stem=32):
    """The structure a RegNet with these stages has (SE width = round(ratio * block input))."""
    se, cin = [], stem
    for w, d in zip(widths, depths):
        for _ in range(d):
            se.append((cin, int(round(cin * se_ratio))) if se_ratio else None)
            cin = w
    return ObservedArch(tuple(widths), tuple(depths), tuple(group_widths), tuple(widths),
                        tuple(s for s in se if s), (True,) * len(widths), 3, stem)


@pytest.mark.parametrize('preset', ALL_PRESETS)
def test_fitted_arch_rebuilds_every_preset_and_its_torchvision_widths(preset):
    d = PRESETS[preset].design()
    obs = observed(d.widths, d.depths, d.group_widths, PRESETS[preset].se_ratio)
    assert resolve_arch(obs).name == preset
    spec = fit_arch(obs)  # the search alone, without the preset table
    assert spec.design().widths == d.widths and spec.design().depths == d.depths
    params = torchvision_params(preset)  # torchvision's own widths for the preset's numbers
    tv = observed(params.widths, params.depths, params.group_widths, PRESETS[preset].se_ratio)
    if preset in ('regnety_800mf', 'regnety_8.0gf'):
        with pytest.raises(ConversionError, match='no RegNet arch'):
            fit_arch(tv)
        return
    fitted = get_arch(fit_arch(tv).to_dict()).design()  # through the config's dict form
    assert (fitted.widths, fitted.depths, fitted.group_widths) == (
        tv.widths, tv.depths, tv.group_widths)
    assert (resolve_arch(tv).name is None) == (preset in TORCHVISION_CHANGED)


def _meta_state(arch, **kwargs):
    with torch.device('meta'):
        return dict(RegNet(arch, **kwargs).state_dict())


@pytest.mark.parametrize('preset', ['regnetx_400mf', 'regnety_600mf'])
def test_read_arch_gives_the_built_structure(preset):
    d = PRESETS[preset].design()
    obs = read_arch(_meta_state(preset))
    assert (obs.widths, obs.depths, obs.group_widths) == (d.widths, d.depths, d.group_widths)
    assert (obs.in_channels, obs.stem_channels) == (3, 32)
    stemless = read_arch(_meta_state(preset, in_channels=64, with_stem=False))
    assert (stemless.in_channels, stemless.stem_channels) == (64, None)


def test_custom_stem_width_and_se_ratio_are_recovered():
    arch = dict(w0=48, wa=27.89, wm=2.09, depth=16, group_w=8, bot_mul=1.0, se_ratio=0.5)
    result = resolve_arch(read_arch(_meta_state(arch, stem_channels=24)))
    assert result.spec.design().widths == get_arch(arch).design().widths
    assert result.spec.se_ratio == 0.5 and result.name is None


@pytest.mark.parametrize('edit,message', [
    (lambda s: s.update({'layer1.0.conv1.bias': torch.zeros(1)}), 'not part of a RegNet'),
    (lambda s: s.pop('layer3.1.conv2.weight'), "'layer3.1.conv2.weight' is missing"),
    (lambda s: s.update({'layer2.0.conv2.weight': torch.zeros(64, 64, 3, 3)}), 'has shape'),
    (lambda s: [s.pop(k) for k in list(s) if k.startswith('layer1.0.se.')], 'only some blocks'),
    (lambda s: [s.pop(k) for k in list(s) if k.startswith('layer3.2.')], 'indices are'),
])
def test_structures_no_regnet_has_are_named(edit, message):
    state = {k: torch.zeros(v.shape) for k, v in _meta_state('regnety_200mf').items()}
    edit(state)
    with pytest.raises(ConversionError, match=message):
        read_arch(state)


def test_requested_arch_dict_is_checked():
    obs = read_arch(_meta_state('regnetx_200mf'))
    assert resolve_arch(obs, PRESETS['regnetx_200mf'].to_dict()).name == 'regnetx_200mf'
    with pytest.raises(ConversionError, match='do not fit the given arch'):
        resolve_arch(obs, dict(PRESETS['regnetx_200mf'].to_dict(), group_w=16))
