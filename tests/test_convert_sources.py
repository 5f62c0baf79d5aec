"""Source networks in timm's and torchvision's exact published layouts, and checks that they are.

Neither library installs beside this stack: torchvision's PyPI wheels are CUDA
builds whose operators do not load with the CPU torch 2.13, and timm imports
torchvision. So these modules rebuild the two published RegNet definitions
(module names, nesting, widths rule, forward) in our own code, from the
libraries' documented architecture: torchvision's ``stem.0/1``,
``trunk_output.block{i}.block{i}-{j}`` with ``proj.0/1`` and ``f.a/b/se/c``,
``fc``, and its ``_make_divisible`` width rounding; timm's ``stem.conv/bn``,
``s{i}.b{j}`` with ``conv1/2/3.conv/bn``, ``se.fc1/fc2``, ``downsample.conv/bn``,
``head.fc``. The tests below pin them to published facts: torchvision's
parameter counts (its weights' ``num_params``) and which torchvision models
have stage widths other than pycls's.
"""
import math
from collections import OrderedDict
from typing import List, Tuple

import pytest
import torch
import torch.nn as nn

from mmregnet import PRESETS

# torchvision model name -> (preset with the same w0/wa/wm/depth/group_w, published num_params).
TORCHVISION_MODELS = {
    'regnet_x_400mf': ('regnetx_400mf', 5495976), 'regnet_x_800mf': ('regnetx_800mf', 7259656),
    'regnet_x_1_6gf': ('regnetx_1.6gf', 9190136), 'regnet_x_3_2gf': ('regnetx_3.2gf', 15296552),
    'regnet_x_8gf': ('regnetx_8.0gf', 39572648), 'regnet_x_16gf': ('regnetx_16gf', 54278536),
    'regnet_x_32gf': ('regnetx_32gf', 107811560), 'regnet_y_400mf': ('regnety_400mf', 4344144),
    'regnet_y_800mf': ('regnety_800mf', 6432512), 'regnet_y_1_6gf': ('regnety_1.6gf', 11202430),
    'regnet_y_3_2gf': ('regnety_3.2gf', 19436338), 'regnet_y_8gf': ('regnety_8.0gf', 39381472),
    'regnet_y_16gf': ('regnety_16gf', 83590140), 'regnet_y_32gf': ('regnety_32gf', 145046770),
}
#: Presets whose widths torchvision's rounding changes (the issue's list).
TORCHVISION_CHANGED = ('regnetx_400mf', 'regnetx_4.0gf', 'regnety_800mf', 'regnety_4.0gf',
                       'regnety_8.0gf')


def stage_params(preset: str, rounding: str) -> Tuple[List[int], List[int], List[int]]:
    """Stage widths, depths and group widths as torchvision/timm compute them (float32 torch).

    ``rounding='pycls'`` is timm's default (``round(b / g) * g``);
    ``'torchvision'`` is ``_make_divisible`` (round half up, at least ``g``,
    never below 90% of the width), used by torchvision and timm's ``*_tv`` models.
    """
    s = PRESETS[preset]
    cont = torch.arange(s.depth, dtype=torch.float32, device='cpu') * s.wa + s.w0
    exps = torch.round(torch.log(cont / s.w0) / math.log(s.wm))
    blocks = (torch.round(s.w0 * torch.pow(s.wm, exps) / 8) * 8).int().tolist()
    widths = sorted(set(blocks))
    depths = [blocks.count(w) for w in widths]
    groups = [min(s.group_w, w) for w in widths]
    if rounding == 'torchvision':
        def divisible(v, g):
            new = max(g, int(v + g / 2) // g * g)
            return new + g if new < 0.9 * v else new
        widths = [divisible(w, g) for w, g in zip(widths, groups)]
    else:
        widths = [int(round(w / g) * g) for w, g in zip(widths, groups)]
    return widths, depths, groups


def _conv_bn(cin, cout, k=1, stride=1, groups=1, relu=True):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
              nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, *([nn.ReLU()] if relu else []))


class _TvSE(nn.Module):
    def __init__(self, channels, squeeze):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(channels, squeeze, 1), nn.Conv2d(squeeze, channels, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean((2, 3), keepdim=True)))))


class _TvBlock(nn.Module):
    def __init__(self, cin, cout, stride, gw, se_ratio):
        super().__init__()
        projects = cin != cout or stride != 1
        self.proj = _conv_bn(cin, cout, 1, stride, relu=False) if projects else None
        f = OrderedDict(a=_conv_bn(cin, cout), b=_conv_bn(cout, cout, 3, stride, cout // gw))
        if se_ratio:
            f['se'] = _TvSE(cout, int(round(se_ratio * cin)))
        f['c'] = _conv_bn(cout, cout, relu=False)
        self.f = nn.Sequential(f)

    def forward(self, x):
        return torch.relu((x if self.proj is None else self.proj(x)) + self.f(x))


class TorchvisionRegNet(nn.Module):
    """torchvision's ``RegNet`` module tree for a preset's parameters (torchvision rounding)."""

    def __init__(self, preset: str, num_classes: int = 1000, rounding: str = 'torchvision'):
        super().__init__()
        widths, depths, groups = stage_params(preset, rounding)
        self.stem = _conv_bn(3, 32, 3, 2)
        stages, cin = OrderedDict(), 32
        for i, (w, d, g) in enumerate(zip(widths, depths, groups), 1):
            stages[f'block{i}'] = nn.Sequential(OrderedDict(
                (f'block{i}-{j}', _TvBlock(cin if j == 0 else w, w, 2 if j == 0 else 1, g,
                                           PRESETS[preset].se_ratio)) for j in range(d)))
            cin = w
        self.trunk_output = nn.Sequential(stages)
        self.fc = nn.Linear(cin, num_classes)

    def stages(self) -> List[nn.Module]:
        """The stem, then each stage."""
        return [self.stem] + list(self.trunk_output.children())


class _TimmConvNormAct(nn.Module):
    def __init__(self, cin, cout, k=1, stride=1, groups=1, act=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False)
        self.bn, self.act = nn.BatchNorm2d(cout), act

    def forward(self, x):
        x = self.bn(self.conv(x))
        return torch.relu(x) if self.act else x


class _TimmBlock(nn.Module):
    def __init__(self, cin, cout, stride, gw, se_ratio):
        super().__init__()
        self.conv1 = _TimmConvNormAct(cin, cout)
        self.conv2 = _TimmConvNormAct(cout, cout, 3, stride, cout // gw)
        self.se = _TvSE(cout, int(round(cin * se_ratio))) if se_ratio else nn.Identity()
        self.conv3 = _TimmConvNormAct(cout, cout, act=False)
        self.downsample = _TimmConvNormAct(cin, cout, 1, stride, act=False) \
            if cin != cout or stride != 1 else nn.Identity()

    def forward(self, x):
        return torch.relu(self.conv3(self.se(self.conv2(self.conv1(x)))) + self.downsample(x))


class TimmRegNet(nn.Module):
    """timm's ``RegNet`` module tree for a preset (``rounding='torchvision'``: timm's ``*_tv``)."""

    def __init__(self, preset: str, num_classes: int = 1000, rounding: str = 'pycls'):
        super().__init__()
        widths, depths, groups = stage_params(preset, rounding)
        self.stem, cin = _TimmConvNormAct(3, 32, 3, 2), 32
        for i, (w, d, g) in enumerate(zip(widths, depths, groups), 1):
            self.add_module(f's{i}', nn.Sequential(OrderedDict(
                (f'b{j + 1}', _TimmBlock(cin if j == 0 else w, w, 2 if j == 0 else 1, g,
                                         PRESETS[preset].se_ratio)) for j in range(d))))
            cin = w
        self.head = nn.Module()
        self.head.fc = nn.Linear(cin, num_classes)
        self.num_stages = len(widths)

    def stages(self) -> List[nn.Module]:
        """The stem, then each stage."""
        return [self.stem] + [getattr(self, f's{i}') for i in range(1, self.num_stages + 1)]


def randomize_norms(net: nn.Module, seed: int = 0) -> nn.Module:
    """Gives every BN distinct statistics and affine terms, so a swapped tensor shows in outputs."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
    net.eval()  # some backbones' train() returns None
    return net


@pytest.mark.parametrize('model', list(TORCHVISION_MODELS))
def test_torchvision_layout_has_the_published_parameter_count(model):
    preset, num_params = TORCHVISION_MODELS[model]
    with torch.device('meta'):
        net = TorchvisionRegNet(preset)
    assert sum(p.numel() for p in net.parameters()) == num_params


@pytest.mark.parametrize('preset', list(PRESETS))
def test_torchvision_rounding_changes_exactly_the_published_five(preset):
    tv = stage_params(preset, 'torchvision')
    assert (tv != stage_params(preset, 'pycls')) == (preset in TORCHVISION_CHANGED)
    assert tuple(stage_params(preset, 'pycls')[0]) == PRESETS[preset].design().widths


def test_timm_layout_keys_are_the_published_ones():
    with torch.device('meta'):
        keys = set(TimmRegNet('regnety_200mf').state_dict())
    for key in ('stem.conv.weight', 'stem.bn.running_var', 's1.b1.conv1.conv.weight',
                's1.b1.conv2.bn.weight', 's1.b1.se.fc1.bias', 's1.b1.se.fc2.weight',
                's1.b1.conv3.bn.num_batches_tracked', 's1.b1.downsample.conv.weight',
                's1.b1.downsample.bn.bias', 'head.fc.weight', 'head.fc.bias'):
        assert key in keys
