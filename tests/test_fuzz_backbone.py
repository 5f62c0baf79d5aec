"""Fuzzing the backbone's and the arch's arguments: refused before allocation, naming the argument.

Every bad value raises a ``ValueError`` (``TypeError`` for an arch that is
neither a name nor a dict) whose message names the argument and the value,
at once and without allocating: the process's peak memory grows by far less
than 1 GiB over all the cases. Random mixes of good and bad values either
build a network (when every value is good) or are refused that way; nothing
else (ZeroDivisionError, OverflowError, a torch error at forward) happens.
"""
import random
import re
import resource

import pytest
import torch

from mmregnet import RegNet
from mmregnet.arch import MAX_DEPTH, MAX_WIDTH, get_arch
from mmregnet.errors import InputError
from mmregnet.models.arguments import MAX_PARAMS

pytestmark = pytest.mark.slow  # fuzzing

SMALL = dict(w0=8, wa=8.0, wm=1.4, depth=4, group_w=8, bot_mul=1.0)  # 4 stages

BAD_ARCHS = [
    (dict(SMALL, depth=10 ** 6), 'depth'),
    (dict(SMALL, depth=MAX_DEPTH + 1), 'depth'),
    (dict(SMALL, depth=True), 'depth'),
    (dict(SMALL, depth=3.0), 'depth'),
    (dict(SMALL, w0=MAX_WIDTH + 8), 'w0'),
    (dict(SMALL, w0=True), 'w0'),
    (dict(SMALL, wa=1e12), 'wa'),
    (dict(SMALL, wa=float('inf')), 'wa'),
    (dict(SMALL, wm=float('nan')), 'wm'),
    (dict(SMALL, wa=30000.0, depth=1000), 'widths'),
    (dict(SMALL, group_w=0), 'group_w'),
    (dict(SMALL, group_w=MAX_WIDTH + 1), 'group_w'),
    (dict(SMALL, group_w=False), 'group_w'),
    (dict(SMALL, bot_mul=1e-9), 'bottleneck'),
    (dict(SMALL, bot_mul=1e9), 'bot_mul'),
    (dict(SMALL, se_ratio=True), 'se_ratio'),
    (dict(w0=24, wa=24.48, wm=2.54, depth=10 ** 6, group_w=16, bot_mul=1.0), 'depth'),
]

BAD_KWARGS = [
    (dict(out_indices=(True,)), 'out_indices'),
    (dict(out_indices=2), 'out_indices must be a sequence'),
    (dict(out_indices='0123'), 'out_indices must be a sequence'),
    (dict(out_indices=(0.0, 1.0)), 'out_indices'),
    (dict(strides=(True, 2, 2, 2)), 'strides'),
    (dict(strides=2), 'strides must be a sequence'),
    (dict(strides=(2, 2, 2, 10 ** 9)), 'strides'),
    (dict(dilations=(1, 1, 1, 1000)), 'dilations'),
    (dict(frozen_stages=True), 'frozen_stages'),
    (dict(frozen_stages=1.0), 'frozen_stages'),
    (dict(in_channels=True), 'in_channels'),
    (dict(in_channels=10 ** 9), 'in_channels'),
    (dict(in_channels=3.0), 'in_channels'),
    (dict(with_stem='no'), 'with_stem must be True or False'),
    (dict(with_stem=0), 'with_stem must be True or False'),
    (dict(stem_channels=0), 'stem_channels'),
    (dict(stem_channels=10 ** 6), 'stem_channels'),
    (dict(norm_eval='yes'), 'norm_eval'),
    (dict(with_cp=1), 'with_cp'),
    (dict(zero_init_residual=None), 'zero_init_residual'),
]


def _peak_kib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@pytest.mark.parametrize('arch,name', BAD_ARCHS)
def test_bad_arch_fields_are_refused_naming_them(arch, name):
    with pytest.raises(ValueError, match=name):
        RegNet(arch)
    with pytest.raises(ValueError, match=name):
        get_arch(arch).design()


@pytest.mark.parametrize('kwargs,message', BAD_KWARGS)
def test_bad_backbone_arguments_are_refused_naming_them(kwargs, message):
    with pytest.raises(InputError, match=message) as error:
        RegNet(SMALL, **kwargs)
    assert repr(list(kwargs.values())[0])[:20] in str(error.value)  # the value is shown


def test_a_backbone_too_large_for_any_machine_is_refused_before_allocation():
    huge = dict(w0=32768, wa=0.0, wm=2.0, depth=1024, group_w=32768, bot_mul=1.0)
    before = _peak_kib()
    with pytest.raises(InputError, match=re.escape(f'at most {MAX_PARAMS:.0e} are allowed')):
        RegNet(huge, out_indices=(0,))
    assert _peak_kib() - before < 1 << 18  # KiB: a quarter GiB


def _draw(rng, good, bad):
    return rng.choice(good) if rng.random() < 0.85 else rng.choice(bad)


def test_random_mixes_build_or_are_refused_and_nothing_else():
    rng = random.Random(0)
    arch_values = dict(
        w0=([8, 16], [0, 12, -8, True, 8.0, 1 << 30, None]),
        wa=([0.0, 8.0, 12.5], [-1.0, float('nan'), float('inf'), 1e15, 'x']),
        wm=([1.5, 2.0, 2.5], [1.0, 0.5, float('nan'), -2.0, None]),
        depth=([1, 2, 3], [0, -1, True, 2.5, 10 ** 9, '3']),
        group_w=([1, 8], [0, -4, False, 1 << 40]),
        bot_mul=([0.5, 1.0], [0.0, -1.0, 1e-12, float('inf'), True]))
    kwarg_values = dict(
        in_channels=([3, 5], [0, True, -3, 1 << 40, 2.0]),
        with_stem=([True, False, None], ['no', 1]),
        stem_channels=([8, 16], [0, False, 1 << 30]),
        frozen_stages=([-1, 0], [True, -2, 99, 0.5]),
        out_indices=([(0,), (0, 1)], [1, (True,), (1, 0), (), 'ab', (0, 99)]),
        strides=([None], [(True,), 3, (0,), (10 ** 9,)]),
        with_cp=([False], [0, 'false']))
    before = _peak_kib()
    built = refused = 0
    for _ in range(300):
        arch = {k: _draw(rng, *v) for k, v in arch_values.items()}
        kwargs = {k: _draw(rng, *v) for k, v in kwarg_values.items()}
        try:
            net = RegNet(arch, **kwargs)
        except (ValueError, TypeError) as e:
            assert str(e) and '\n' not in str(e)
            refused += 1
            continue
        built += 1
        assert all(arch[k] in arch_values[k][0] for k in arch)
        assert all(kwargs[k] in kwarg_values[k][0] for k in kwargs)
        x = torch.rand(1, kwargs['in_channels'], 16, 16)
        assert len(net.eval()(x)) == len(kwargs['out_indices'])
    assert built >= 10 and refused >= 150
    assert _peak_kib() - before < 1 << 20  # KiB: 1 GiB
