"""Converting each source format: real networks saved natively, converted, loaded, compared.

pycls networks are pycls 0.1.1's own ``AnyNet``; timm's and torchvision's are the
libraries' own (test_convert_libraries.py converts every one of their RegNets).
"""
import hashlib
import sys

import pytest
import timm
import torch
from pycls.models.anynet import AnyNet

from mmregnet import PRESETS, RegNet
from mmregnet.arch import timm_name
from mmregnet.checkpoint.arch_inference import resolve_arch
from mmregnet.checkpoint.shapes import read_arch
from mmregnet.convert import ConversionError, convert_checkpoint, convert_file
from mmregnet.convert.cli import main
from mmregnet.convert.layouts import LAYOUTS
from mmregnet.convert.library_models import build_reference
from mmregnet.convert.verify import verify

from conftest import ALL_PRESETS, pycls_anynet_kwargs
from library_nets import TORCHVISION_CHANGED, library_net, library_stages, torchvision_preset_net
from norms import randomize_norms


def pycls_net(preset):
    torch.manual_seed(0)
    return randomize_norms(AnyNet(**pycls_anynet_kwargs(preset))).eval()


def assert_same_outputs(checkpoint, arch, stages, **backbone):
    """Loads the converted weights strictly into mmregnet and compares every stage's output."""
    state = {k: v for k, v in checkpoint['state_dict'].items() if not k.startswith('fc.')}
    net = RegNet(arch, out_indices=tuple(range(len(stages) - 1)), **backbone).eval()
    net.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, y = net(x), stages[0](x)
        for stage, out in zip(stages[1:], ours):
            y = stage(y)
            torch.testing.assert_close(out, y, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize('preset,zip_format', [('regnetx_200mf', False), ('regnety_200mf', True)])
def test_pycls_pyth_converts_verifies_and_matches_pycls(tmp_path, preset, zip_format):
    net = pycls_net(preset)
    src, dst = tmp_path / 'RegNet.pyth', tmp_path / 'out.pth'
    # The model zoo's 2020 files predate torch's zip format; both must load.
    torch.save({'epoch': 99, 'model_state': net.state_dict(), 'optimizer_state': {},
                'cfg': 'MODEL:\n  TYPE: regnet\n'}, src, _use_new_zipfile_serialization=zip_format)
    result = convert_file(str(src), str(dst), verify=True)
    saved = torch.load(dst, weights_only=True)
    meta = saved['meta']
    assert meta['preset'] == preset and meta['arch'] == preset
    assert meta['source']['format'] == 'pycls' and meta['source']['input_channel_order'] == 'BGR'
    assert meta['source']['sha256'] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert meta['head'] == 'dropped' and 'fc.weight' not in saved['state_dict']
    assert result.verify.reference.startswith('pycls') and result.verify.max_abs_diff < 1e-5
    assert_same_outputs(saved, preset, [net.stem, net.s1, net.s2, net.s3, net.s4])


def test_verify_compares_outputs_and_catches_a_swapped_tensor():
    source = pycls_net('regnety_200mf').state_dict()
    converted = convert_checkpoint({'model_state': source}).checkpoint['state_dict']
    observed = read_arch(converted)
    match = resolve_arch(observed)
    ref, _ = build_reference(LAYOUTS['pycls'], match.spec, observed, (2, 2, 2, 2), source)
    assert verify(converted, match.spec, match.name, ref, '').max_abs_diff < 1e-5
    # Two same-shaped tensors swapped: a mapping bug that shapes alone cannot reveal.
    swapped = dict(converted)
    swapped['layer2.0.bn1.weight'], swapped['layer2.0.bn2.weight'] = (
        converted['layer2.0.bn2.weight'], converted['layer2.0.bn1.weight'])
    with pytest.raises(ConversionError, match='outputs differ from pycls'):
        verify(swapped, match.spec, match.name, ref, '')


@pytest.mark.parametrize('errors,expected', [
    (dict(test_err=23.1, ema_err=22.9), 'ema_state'),
    (dict(test_err=22.9, ema_err=23.1), 'model_state'),
    (dict(test_err=23.0, ema_err=23.0), 'model_state'),  # pycls: ties go to model_state
    (dict(), 'model_state'),  # no recorded errors count as 100 each
])
def test_pycls_ema_checkpoint_takes_the_state_with_the_lower_error(errors, expected):
    model = pycls_net('regnetx_200mf').state_dict()
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in model.items()}
    result = convert_checkpoint(dict(model_state=model, ema_state=ema, epoch=5, **errors))
    taken = {'model_state': model, 'ema_state': ema}[expected]
    assert torch.equal(result.checkpoint['state_dict']['conv1.weight'], taken['stem.conv.weight'])
    assert result.checkpoint['meta']['source']['state'].startswith(expected)


def test_state_option_overrides_and_ema_without_ema_is_an_error():
    model = pycls_net('regnetx_200mf').state_dict()
    ema = {k: v * 2 for k, v in model.items()}
    ckpt = dict(model_state=model, ema_state=ema, test_err=30.0, ema_err=20.0)
    result = convert_checkpoint(ckpt, state='model')
    assert torch.equal(result.checkpoint['state_dict']['conv1.weight'], model['stem.conv.weight'])
    with pytest.raises(ConversionError, match='no ema_state'):
        convert_checkpoint(dict(model_state=model), state='ema')


@pytest.mark.slow
def test_torchvision_widths_become_an_arch_dict_never_the_preset():
    net = library_net('torchvision', 'regnet_x_400mf')
    result = convert_checkpoint(net.state_dict(), verify=True)
    arch = result.arch.config_value()
    assert result.arch.name is None and isinstance(arch, dict)
    assert result.observed.widths == (32, 64, 160, 400) != PRESETS['regnetx_400mf'].design().widths
    assert "arch=dict(w0=" in result.config_snippet('out.pth')
    assert_same_outputs(result.checkpoint, arch, library_stages(net))
    with pytest.raises(ConversionError, match='do not fit regnetx_400mf'):
        convert_checkpoint(net.state_dict(), arch='regnetx_400mf')


def _meta_states(preset):
    """The preset's state dict shapes in pycls's, timm's and torchvision's own networks."""
    with torch.device('meta'):  # shapes only: all 24 presets in seconds
        pycls_state = AnyNet(**pycls_anynet_kwargs(preset)).state_dict()
        timm_state = timm.create_model(timm_name(preset)).state_dict()
    return dict(pycls=pycls_state, timm=timm_state,
                torchvision=torchvision_preset_net(preset, 'meta').state_dict())


@pytest.mark.parametrize('preset', ALL_PRESETS)
def test_every_preset_is_recognised_in_every_layout(preset):
    for fmt, state in _meta_states(preset).items():
        if fmt == 'torchvision' and preset in TORCHVISION_CHANGED:
            continue  # covered below
        result = convert_checkpoint(state)
        assert (result.arch.name, result.checkpoint['meta']['source']['format']) == (preset, fmt)
        assert len(result.checkpoint['state_dict']) == len(state) - 2  # all but the classifier


@pytest.mark.parametrize('preset', TORCHVISION_CHANGED)
def test_torchvision_widths_are_the_preset_with_torchvision_rounding(preset):
    result = convert_checkpoint(torchvision_preset_net(preset, 'meta').state_dict())
    assert result.arch.name is None
    assert result.arch.config_value() == dict(PRESETS[preset].to_dict(),
                                              width_rounding='torchvision')
    assert result.arch.spec.design().widths == result.observed.widths
    assert result.observed.widths != PRESETS[preset].design().widths


@pytest.mark.parametrize('library,module', [('pycls', 'pycls.models.anynet'),
                                            ('timm', 'timm.models.regnet'),
                                            ('torchvision', 'torchvision.models.regnet')])
def test_verify_without_the_source_library_says_so_and_still_loads_strictly(
        monkeypatch, capsys, tmp_path, library, module):
    net = {'pycls': lambda: pycls_net('regnety_200mf'),
           'timm': lambda: library_net('timm', 'regnety_002'),
           'torchvision': lambda: library_net('torchvision', 'regnet_y_400mf')}[library]()
    torch.save(net.state_dict(), tmp_path / 'src.pth')
    monkeypatch.setitem(sys.modules, module, None)  # an environment without the library
    assert main([str(tmp_path / 'src.pth'), str(tmp_path / 'out.pth'), '--verify']) == 0
    out = capsys.readouterr().out
    assert (f'verified: {len(net.state_dict()) - 2} tensors load strictly into RegNet(' in out
            and f"; no output comparison ({library} is not installed, so the outputs were not "
            f"compared with {library}'s own RegNet (pip install {library} to compare))" in out)
    assert torch.load(tmp_path / 'out.pth', weights_only=True)['meta']['verify']['reference'] \
        is None


@pytest.mark.slow
@pytest.mark.parametrize('library,name', [('torchvision', 'regnet_x_400mf'),
                                          ('timm', 'regnety_002')])
def test_verify_against_timm_and_torchvision_catches_a_swapped_tensor(library, name):
    source = library_net(library, name).state_dict()
    converted = convert_checkpoint(source).checkpoint['state_dict']
    observed = read_arch(converted)
    match = resolve_arch(observed)
    ref, _ = build_reference(LAYOUTS[library], match.spec, observed, (2, 2, 2, 2), source)
    assert ref.name.startswith(library)
    assert verify(converted, match.spec, 'x', ref, '').max_abs_diff == 0
    swapped = dict(converted)  # a mapping bug that shapes alone cannot reveal
    swapped['layer2.0.bn1.weight'], swapped['layer2.0.bn2.weight'] = (
        converted['layer2.0.bn2.weight'], converted['layer2.0.bn1.weight'])
    with pytest.raises(ConversionError, match=f'outputs differ from {library}'):
        verify(swapped, match.spec, 'x', ref, '')
