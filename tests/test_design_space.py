"""The design-space tools against pycls, the paper's stated constraints and the backbone."""
import os

import numpy as np
import pytest

from mmregnet import PRESETS, complexity
from mmregnet.arch import ArchSpec
from mmregnet.design_space import Measure, Target, sample_population, search
from mmregnet.design_space.describe import BackboneLayout
from mmregnet.design_space.fit import reachable_flops
from mmregnet.design_space.formatting import format_size, parse_size
from mmregnet.fileio import atomic_output
from mmregnet.design_space.population import read_column, write_population
from mmregnet.design_space.space import REFINED_REGNET, SPACES, regnet_stage_count_ok

from conftest import ALL_PRESETS

ANYNET = ['anynetx-a', 'anynetx-b', 'anynetx-c', 'anynetx-d', 'anynetx-e']


def _draws(space, n=300, seed=0):
    rng = np.random.default_rng(seed)
    nets = [SPACES[space].draw(rng) for _ in range(n)]
    return [net for net in nets if net is not None]


def _inner(net, i):
    return int(round(net.widths[i] * net.bot_muls[i]))


@pytest.mark.parametrize('space', ANYNET)
def test_anynetx_draws_keep_the_papers_ranges(space):
    for net in _draws(space):
        assert len(net.depths) == 4 and all(1 <= d <= 16 for d in net.depths)
        assert all(8 <= w <= 1024 and w % 8 == 0 for w in net.widths)
        assert all(1 / bm in (1, 2, 4) for bm in net.bot_muls)
        for i, g in enumerate(net.group_widths):
            # Groups are capped at the inner width, as pycls makes them compatible.
            assert g in (1, 2, 4, 8, 16, 32) or g == _inner(net, i)
            assert _inner(net, i) % g == 0


@pytest.mark.parametrize('space', ANYNET)
def test_anynetx_a_to_e_add_one_constraint_each(space):
    level = ANYNET.index(space)
    nets = _draws(space)
    shared_b = [len(set(n.bot_muls)) == 1 for n in nets]
    shared_g = [len({g for i, g in enumerate(n.group_widths) if g != _inner(n, i)}) <= 1
                for n in nets]
    inc_w = [list(n.widths) == sorted(n.widths) for n in nets]
    inc_d = [list(n.depths) == sorted(n.depths) for n in nets]
    for flags, holds_from in ((shared_b, 1), (shared_g, 2), (inc_w, 3), (inc_d, 4)):
        assert all(flags) if level >= holds_from else not all(flags)


def test_regnet_stage_rule_equals_pycls():
    from pycls.models.regnet import generate_regnet
    rng = np.random.default_rng(0)
    verdicts = []
    for _ in range(400):
        arch = ArchSpec(w0=8 * int(rng.integers(1, 33)), wa=round(float(rng.uniform(1, 256)), 2),
                        wm=round(float(rng.uniform(1.5, 3)), 2), depth=int(rng.integers(4, 40)),
                        group_w=8)
        _, num_stages, max_stage, _ = generate_regnet(arch.wa, arch.w0, arch.wm, arch.depth)
        verdicts.append(regnet_stage_count_ok(arch))
        assert verdicts[-1] == (num_stages == max_stage == 4)
    assert 0 < sum(verdicts) < len(verdicts)


@pytest.mark.parametrize('space,se,refined', [
    ('regnetx', None, False), ('regnety', 0.25, False),
    ('regnetx-refined', None, True), ('regnety-refined', 0.25, True)])
def test_regnet_draws_keep_the_papers_ranges(space, se, refined):
    nets = _draws(space, 200)
    assert len(nets) > 20
    for net in nets:
        a = net.arch
        assert regnet_stage_count_ok(a) and a.se_ratio == se and net.depths == a.design().depths
        assert a.w0 % 8 == 0 and 8 <= a.w0 <= 256 and 0 < a.wa <= 256
        if refined:  # paper §4: b = 1, wm >= 2; pycls's sampler: 12 <= d <= 28
            assert a.bot_mul == 1 and 12 <= a.depth <= 28 and 2 <= a.wm <= 3
            assert a.group_w % 8 == 0 and 8 <= a.group_w <= 256 and a.wa >= 8
        else:  # paper §3.3: d < 64, w0 < 256, 1.5 <= wm <= 3, b and g as AnyNetX
            assert a.depth < 64 and a.w0 < 256 and 1.5 <= a.wm <= 3
            assert 1 / a.bot_mul in (1, 2, 4) and a.group_w in (1, 2, 4, 8, 16, 32)


@pytest.mark.parametrize('space', list(SPACES))
def test_net_complexity_equals_pycls_anynet(space):
    from pycls.models.anynet import AnyNet
    for net in _draws(space, 40, seed=1)[:3]:
        expected = AnyNet.complexity(
            dict(h=64, w=48, flops=0, params=0, acts=0), stem_type='simple_stem_in', stem_w=32,
            block_type='res_bottleneck_block', ds=list(net.depths), ws=list(net.widths),
            ss=[2] * 4, bms=list(net.bot_muls), gws=list(net.group_widths),
            se_r=net.se_ratio, nc=10)
        got = Measure((64, 48), num_classes=10).of_net(net)
        assert got == {k: expected[k] for k in got}


def test_sampling_is_deterministic_and_a_prefix_of_larger_samples():
    first = sample_population('anynetx-c', 6, seed=3)
    assert sample_population('anynetx-c', 6, seed=3) == first
    assert sample_population('anynetx-c', 3, seed=3) == first[:3]
    assert sample_population('anynetx-c', 6, seed=4) != first


def test_complexity_restricted_sampling_keeps_the_range_and_counts_exactly():
    rows = sample_population('regnetx-refined', 4, seed=0, flops_range=(360e6, 400e6))
    for row in rows:
        spec = ArchSpec(**{k: row[k] for k in ('w0', 'wa', 'wm', 'depth', 'group_w', 'bot_mul')})
        assert 360e6 <= row['flops'] <= 400e6
        assert complexity(spec) == {k: row[k] for k in ('params', 'flops', 'acts')}


def test_unreachable_range_and_bad_arguments_are_explained():
    with pytest.raises(ValueError, match=r'only 0 of 2 nets .* \[1k, 2k\] .* spanned'):
        sample_population('anynetx-a', 2, 0, flops_range=(1e3, 2e3))
    with pytest.raises(ValueError, match="unknown design space 'anynetx-f'.*anynetx-a"):
        sample_population('anynetx-f', 2, 0)
    with pytest.raises(ValueError, match='positive integer, at most 100000, got 0'):
        sample_population('anynetx-a', 0, 0)


def test_population_csv_round_trip_and_read_errors(tmp_path):
    rows = sample_population('regnety', 5, seed=2)
    path = tmp_path / 'pop.csv'
    with open(path, 'w', newline='') as f:
        write_population(rows, f)
    assert read_column(str(path), 'flops').tolist() == [r['flops'] for r in rows]
    lines = path.read_text().splitlines()
    lines[0] += ',error'
    lines[1] += ',31.5'
    lines[3] += ',oops'
    path.write_text('\n'.join(lines) + '\n')
    with pytest.raises(ValueError, match=r"line 4: column 'error' must be a finite number, got 'oops'"):
        read_column(str(path), 'error')
    with pytest.raises(ValueError, match="no column 'eror'; its columns are: index, space"):
        read_column(str(path), 'eror')
    lines[3] = lines[3][:-len(',oops')] + ','
    path.write_text('\n'.join(lines) + '\n')
    assert read_column(str(path), 'error').tolist() == [31.5]  # empty cells: not yet run


@pytest.mark.parametrize('name', ALL_PRESETS)
def test_fit_at_a_presets_flops_ranks_an_arch_within_2_percent_first(name):
    spec = PRESETS[name]
    target = complexity(spec)['flops']
    best = search(Target(target), family='y' if spec.se_ratio else 'x', top=1)[0]
    a = best.arch
    assert abs(complexity(a)['flops'] / target - 1) <= 0.02
    assert complexity(a) == dict(params=best.params, flops=best.flops, acts=best.acts)
    assert a.se_ratio == spec.se_ratio and a.bot_mul == 1 and regnet_stage_count_ok(a)
    assert 12 <= a.depth <= 28 and 2 <= a.wm <= 3 and a.w0 <= 256 and 8 <= a.wa <= 256
    assert a.group_w in REFINED_REGNET.group_widths


def test_fit_is_deterministic_ranked_and_keeps_caps():
    target = Target(1.2e9, params_max=6e6)
    by_acts = search(target, rank='acts', top=4)
    assert search(target, rank='acts', top=4) == by_acts
    assert [c.acts for c in by_acts] == sorted(c.acts for c in by_acts)
    assert all(c.params <= 6e6 and abs(c.flops / 1.2e9 - 1) <= 0.02 for c in by_acts)
    nearest = search(Target(1.2e9), top=4)
    assert [abs(c.flops - 1.2e9) for c in nearest] == sorted(abs(c.flops - 1.2e9) for c in nearest)


def test_fit_explains_impossible_targets():
    low, high = reachable_flops('x', Measure())
    assert low < 200e6 and high > 32e9  # the zoo's range lies inside the refined space
    with pytest.raises(ValueError, match=f'reaches about {format_size(low)} to '):
        search(Target(1e3))
    with pytest.raises(ValueError, match=r'has params <= 1k; the smallest found has [\d.]+M'):
        search(Target(1e9, params_max=1e3))


@pytest.mark.parametrize('text,value', [('1.2G', 1_200_000_000), ('400M', 400_000_000),
                                        ('10M', 10_000_000), ('3.5e9', 3_500_000_000),
                                        ('1.6GF', 1_600_000_000), ('12k', 12_000), ('7', 7)])
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize('text', ['', '1.2X', 'G', '1..2G', '-5M', '0', '1e999'])
def test_parse_size_rejects_malformed(text):
    with pytest.raises(ValueError, match=repr(text).replace('.', r'\.')):
        parse_size(text)


@pytest.mark.parametrize('name', ALL_PRESETS)
def test_show_outputs_equal_the_built_backbone(name, build):
    net = build(name, with_stem=False)
    b = BackboneLayout.create(name, (32, 32), 64, False, (1, 2, 2, 2), (1, 2, 3))
    assert (b.out_channels, b.out_strides) == (net.out_channels, net.out_strides)
    with_stem = BackboneLayout.create(name)
    assert with_stem.out_strides == (4, 8, 16, 32)  # the stem, then 2 per stage
    assert with_stem.out_channels == net.stage_widths


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    path = tmp_path / 'keep.csv'
    path.write_text('mine')
    with pytest.raises(FileExistsError, match='pass --force'):
        with atomic_output(str(path)):
            pass
    with pytest.raises(RuntimeError):
        with atomic_output(str(path), force=True) as tmp:
            open(tmp, 'w').write('partial')
            raise RuntimeError
    assert path.read_text() == 'mine' and os.listdir(tmp_path) == ['keep.csv']
    with pytest.raises(FileNotFoundError, match='folder'):
        with atomic_output(str(tmp_path / 'nope' / 'x.csv')):
            pass
