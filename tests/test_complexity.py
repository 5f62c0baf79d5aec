"""Analytic complexity, exact against pycls 0.1.1 and against the built networks."""
import pytest
import torch
import torch.nn as nn

from mmregnet import complexity

from conftest import ALL_PRESETS, pycls_anynet_kwargs


def test_golden_regnetx_400mf():
    assert complexity('regnetx_400mf') == dict(params=5157512, flops=397678568, acts=3143272)


@pytest.mark.parametrize('name', ALL_PRESETS)
def test_classification_complexity_equals_pycls(name):
    from pycls.models.anynet import AnyNet
    cx = dict(h=224, w=224, flops=0, params=0, acts=0)
    expected = AnyNet.complexity(cx, **pycls_anynet_kwargs(name))
    got = complexity(name, input_size=224, num_classes=1000)
    assert got == {k: expected[k] for k in ('params', 'flops', 'acts')}


def _counted_macs(net, x):
    """Multiply-adds of every conv, counted from the real output shapes by hooks."""
    total = []

    def hook(m, _, out):
        k = m.kernel_size[0] * m.kernel_size[1]
        total.append(k * m.in_channels * m.out_channels * out.shape[2] * out.shape[3]
                     // m.groups + (m.out_channels if m.bias is not None else 0))
    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        net.eval()(x)
    for h in handles:
        h.remove()
    return sum(total)


@pytest.mark.parametrize('name', ALL_PRESETS)
def test_backbone_complexity_equals_built_network(name, build):
    stem = build(name, with_stem=True)
    cx = complexity(name, input_size=(48, 40), num_classes=None)
    assert cx['params'] == sum(p.numel() for p in stem.parameters())
    assert cx['flops'] == _counted_macs(stem, torch.rand(1, 3, 48, 40))

    nostem = build(name, with_stem=False)
    cx = complexity(name, input_size=32, num_classes=None, in_channels=64, with_stem=False,
                    strides=(1, 2, 2, 2))
    assert cx['params'] == sum(p.numel() for p in nostem.parameters())
    assert cx['flops'] == _counted_macs(nostem, torch.rand(1, 64, 32, 32))


def test_pointpillars_pseudo_image_400x400(build):
    net = build('regnetx_400mf', with_stem=False)
    cx = complexity('regnetx_400mf', input_size=400, num_classes=None, in_channels=64,
                    with_stem=False, strides=(1, 2, 2, 2))
    assert cx['flops'] == _counted_macs(net, torch.rand(1, 64, 400, 400))
    assert cx['params'] == sum(p.numel() for p in net.parameters())
