"""The stem-less adaptation: exact on cyclically repeated inputs, every tensor accounted for."""
import pytest
import torch
import torch.nn.functional as F
from pycls.models.anynet import AnyNet

from mmregnet import RegNet
from mmregnet.convert import ConversionError, convert_checkpoint
from mmregnet.convert.stemless import widen_inputs

from conftest import pycls_anynet_kwargs
from norms import randomize_norms


def tile(x, channels):
    """The input whose channel c is x's channel c mod C."""
    return x[:, torch.arange(channels) % x.shape[1]]


@pytest.mark.parametrize('old,new', [(32, 64), (32, 48), (32, 32), (32, 16), (24, 7)])
def test_widened_conv_computes_the_pretrained_conv_on_repeated_channels(old, new):
    weight = torch.randn(8, old, 1, 1)
    adapted = widen_inputs(weight, new)
    assert adapted.shape == (8, new, 1, 1)
    if new >= old:  # the new input repeats the old channels
        x = torch.randn(2, old, 5, 5)
        torch.testing.assert_close(F.conv2d(tile(x, new), adapted), F.conv2d(x, weight))
    else:  # the old input repeats the new channels
        x = torch.randn(2, new, 5, 5)
        torch.testing.assert_close(F.conv2d(x, adapted), F.conv2d(tile(x, old), weight))


@pytest.mark.parametrize('preset', ['regnetx_200mf', 'regnety_200mf'])
def test_stemless_backbone_reproduces_the_pretrained_network(preset):
    torch.manual_seed(0)
    net = randomize_norms(AnyNet(**pycls_anynet_kwargs(preset))).eval()
    source = net.state_dict()
    result = convert_checkpoint({'model_state': source}, stemless_in_channels=64, verify=True)
    assert result.backbone == dict(in_channels=64, with_stem=False)
    assert result.verify.skipped == 'the stem-less adaptation changes the first block'
    stemless = RegNet(preset, in_channels=64, with_stem=False, out_indices=(3,)).eval()
    stemless.load_state_dict(result.checkpoint['state_dict'], strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = net.stem(x)
        expected = net.s4(net.s3(net.s2(net.s1(features))))
        torch.testing.assert_close(stemless(tile(features, 64))[0], expected, rtol=1e-4, atol=1e-5)

    meta = result.checkpoint['meta']
    adapted = {line.split(' ')[0] for line in meta['adapted']}
    expected_adapted = {'layer1.0.conv1.weight', 'layer1.0.downsample.0.weight'}
    if preset.startswith('regnety'):  # the SE width is a quarter of the (now wider) input
        expected_adapted |= {'layer1.0.se.fc1.weight', 'layer1.0.se.fc1.bias',
                             'layer1.0.se.fc2.weight'}
    assert adapted == expected_adapted
    dropped = {line.split(' ')[0] for line in meta['dropped']}
    assert dropped == {'conv1.weight', 'bn1.weight', 'bn1.bias', 'bn1.running_mean',
                       'bn1.running_var', 'bn1.num_batches_tracked'}
    kept = set(result.checkpoint['state_dict'])
    assert not kept & dropped
    assert len(kept) + len(dropped) == len(source) - 2  # every tensor but the classifier


def test_pointpillars_strides_drop_a_projection_that_has_no_place():
    # regnetx_800mf's stage 1 is 64 wide: at stride 1 on a 64-channel input it needs no projection.
    weights = RegNet('regnetx_800mf').state_dict()
    result = convert_checkpoint(weights, stemless_in_channels=64, strides=(1, 2, 2, 2),
                                verify=True)
    dropped = result.checkpoint['meta']['dropped']
    assert [d.split(' ')[0] for d in dropped if d.startswith('layer')] == [
        'layer1.0.downsample.0.weight', 'layer1.0.downsample.1.weight',
        'layer1.0.downsample.1.bias', 'layer1.0.downsample.1.running_mean',
        'layer1.0.downsample.1.running_var', 'layer1.0.downsample.1.num_batches_tracked']
    assert all('no projection' in d for d in dropped if d.startswith('layer'))
    assert result.backbone == dict(in_channels=64, with_stem=False, strides=(1, 2, 2, 2))
    assert "strides=(1, 2, 2, 2)" in result.config_snippet('w.pth')


def test_narrowing_an_se_unit_is_refused():
    with pytest.raises(ConversionError, match='SE squeeze width would shrink from 8 to 4'):
        convert_checkpoint(RegNet('regnety_200mf').state_dict(), stemless_in_channels=16)
    narrow = convert_checkpoint(RegNet('regnetx_200mf').state_dict(), stemless_in_channels=16)
    assert narrow.checkpoint['state_dict']['layer1.0.conv1.weight'].shape[1] == 16
