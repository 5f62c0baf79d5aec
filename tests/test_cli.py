"""The ``mmregnet`` command: each subcommand's output against the library and real builds."""
import csv
import io
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from mmregnet import PRESETS, complexity, get_arch
from mmregnet.arch import ALIASES
from mmregnet.cli import Progress, main
from mmregnet.design_space.formatting import format_size

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_json_agrees_with_complexity_and_designs(capsys):
    code, out, _ = run(capsys, 'list', '--format', 'json')
    records = json.loads(out)
    assert code == 0 and [r['name'] for r in records] == list(PRESETS)
    for r in records:
        d = PRESETS[r['name']].design()
        assert {k: r[k] for k in ('params', 'flops', 'acts')} == complexity(r['name'])
        assert (r['widths'], r['depths'], r['group_widths']) == (
            list(d.widths), list(d.depths), list(d.group_widths))
        assert get_arch(r['arch']) == PRESETS[r['name']]


def test_list_csv_and_table_filter_by_family(capsys):
    _, out, _ = run(capsys, 'list', '--family', 'y', '--format', 'csv')
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r['name'] for r in rows] == [n for n in PRESETS if n.startswith('regnety')]
    assert int(rows[0]['flops']) == complexity('regnety_200mf')['flops']
    _, out, _ = run(capsys, 'list', '--family', 'x')
    lines = out.splitlines()
    assert len(lines) == 2 + 12 and lines[3].split()[:3] == ['regnetx_400mf', '5.158M', '397.7M']


def test_list_names_timm_gives_timms_names_in_table_order(capsys):
    code, out, _ = run(capsys, 'list', '--names', 'timm', '--format', 'json')
    records = json.loads(out)
    assert code == 0 and [r['name'] for r in records] == list(ALIASES)
    for r, preset in zip(records, PRESETS):  # the same rows, only named differently
        assert r['params'] == complexity(preset)['params']
        assert get_arch(r['name']) is PRESETS[preset]
    _, out, _ = run(capsys, 'list', '--names', 'timm', '--family', 'y')
    assert [line.split()[0] for line in out.splitlines()[2:]] == [
        n for n in ALIASES if n.startswith('regnety')]


def test_show_takes_a_timm_name(capsys):
    code, out, _ = run(capsys, 'show', 'regnetx_016')
    assert code == 0 and out == run(capsys, 'show', 'regnetx_1.6gf')[1]
    assert out.startswith('regnetx_1.6gf: ')


def _snippet_model(text, neck):
    """The backbone and one neck from ``show``'s text, as modules to build.

    The snippets merge into a base config (tests/test_snippets.py pastes them);
    here the backbone's is complete and the neck's inputs go into a small neck.
    """
    body = text[text.index('# custom_imports'):].split('\n', 1)[1]
    backbone_text, rest = body.split('# with an FPN neck\n')
    fpn_text, secondfpn_text = rest.split('\n# or with a SECOND-FPN neck')
    neck_text = fpn_text if neck == 'FPN' else secondfpn_text.split('\n', 1)[1]
    cfg = eval('dict(' + backbone_text + neck_text + ')')  # the snippets are config syntax
    backbone = cfg.get('backbone', cfg.get('pts_backbone'))
    for key in ('_delete_', 'init_cfg'):
        backbone.pop(key, None)
    neck_inputs = cfg.get('neck', cfg.get('pts_neck'))
    n = len(neck_inputs['in_channels'])
    neck_cfg = (dict(type='mmdet.FPN', out_channels=16, num_outs=n, **neck_inputs)
                if neck == 'FPN' else
                dict(type='mmdet3d.SECONDFPN', out_channels=[8] * n, **neck_inputs))
    return dict(backbone=backbone, neck=neck_cfg)


@pytest.mark.parametrize('arch,argv,size', [
    ('regnetx_400mf', ['--no-stem', '--in-channels', '64', '--strides', '1', '2', '2', '2',
                       '--out-indices', '1', '2', '3'], (64, 40, 48)),
    ('{"w0": 16, "wa": 20.5, "wm": 2.6, "depth": 14, "group_w": 8, "bot_mul": 1.0, '
     '"se_ratio": 0.25}', [], (3, 64, 64)),
])
def test_show_snippets_build_and_connect(capsys, arch, argv, size):
    from mmdet3d.registry import MODELS
    code, out, _ = run(capsys, 'show', arch, '--input-size', str(size[1]), str(size[2]), *argv)
    assert code == 0
    for neck in ('FPN', 'SECOND-FPN'):
        cfg = _snippet_model(out, neck)
        backbone, head = MODELS.build(cfg['backbone']).eval(), MODELS.build(cfg['neck']).eval()
        with torch.no_grad():
            feats = backbone(torch.rand(1, *size))
            outs = head(list(feats))
        assert [f.shape[1] for f in feats] == cfg['neck']['in_channels']
        if neck == 'SECOND-FPN':  # every output upsampled to the first's size
            assert outs[0].shape[-2:] == feats[0].shape[-2:]
    spec = get_arch(json.loads(arch) if arch.startswith('{') else arch)
    cx = complexity(spec, input_size=size[1:], num_classes=None, in_channels=size[0],
                    with_stem='--no-stem' not in argv,
                    strides=(1, 2, 2, 2) if argv else None)
    assert f'flops {format_size(cx["flops"])}, acts {format_size(cx["acts"])}' in out


@pytest.mark.parametrize('argv,message', [
    (['show', 'regnetx_401mf'], "unknown RegNet arch 'regnetx_401mf'; expected one of: "
                                'regnetx_200mf'),
    (['show', '{"w0": 24,'], 'not valid JSON'),
    (['show', 'regnetx_400mf', '--strides', '1', '2'], 'must be 4 positive integers'),
    (['show', 'regnetx_400mf', '--out-indices', '3', '1'], 'must be increasing stage indices'),
    (['fit', '--flops', '1k'], 'no RegNetX has 1k flops .* reaches about [\\d.]+M to [\\d.]+G'),
    (['fit', '--flops', '1G', '--params-max', '1k'], 'has params <= 1k; the smallest found'),
    (['plot', '--out', 'x.png'], 'either ARCH .* or --edf'),
    (['plot', 'regnetx_400mf', '--out', 'x.jpg'], "must end in one of .png, .pdf, .svg"),
])
def test_errors_are_clear_and_exit_1(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *argv)
    assert code == 1 and out == '' and not os.listdir(tmp_path)
    assert re.search(message, err), err


@pytest.mark.parametrize('value', ['1.2x', 'G', '-1M'])
def test_malformed_sizes_are_usage_errors(capsys, value):
    with pytest.raises(SystemExit) as e:
        main(['fit', f'--flops={value}'])
    assert e.value.code == 2
    assert f"argument --flops: expected a size like 1.2G, 400M, 10k or 3.5e9, got '{value}'" \
        in capsys.readouterr().err


def test_fit_json_results_are_within_tolerance_and_pasteable(capsys):
    code, out, err = run(capsys, 'fit', '--flops', '1.2G', '--family', 'y', '--top', '3',
                         '--format', 'json', '--quiet')
    results = json.loads(out)
    assert code == 0 and err == '' and [r['rank'] for r in results] == [1, 2, 3]
    for r in results:
        assert r['arch']['se_ratio'] == 0.25
        assert complexity(r['arch'])['flops'] == r['flops']
        assert abs(r['flops'] / 1.2e9 - 1) <= 0.02
    code, table, _ = run(capsys, 'fit', '--flops', '1.2G', '--family', 'y', '--top', '3')
    pasted = [line.split(': arch=', 1)[1] for line in table.splitlines() if ': arch=' in line]
    assert [get_arch(eval(p)).to_dict() for p in pasted] == [r['arch'] for r in results]


def test_sample_is_deterministic_and_never_overwrites(capsys, tmp_path):
    a, b, c = (str(tmp_path / n) for n in ('a.csv', 'b.csv', 'c.csv'))
    argv = ['sample', '--space', 'anynetx-e', '--n', '8', '--quiet']
    assert run(capsys, *argv, '--seed', '5', '--out', a)[0] == 0
    assert run(capsys, *argv, '--seed', '5', '--out', b)[0] == 0
    assert run(capsys, *argv, '--seed', '6', '--out', c)[0] == 0
    text = open(a).read()
    assert text == open(b).read() != open(c).read() and len(text.splitlines()) == 9
    open(a, 'a').write('user edit\n')
    code, _, err = run(capsys, *argv, '--seed', '6', '--out', a)
    assert code == 1 and 'exists; pass --force' in err and open(a).read().endswith('user edit\n')
    assert run(capsys, *argv, '--seed', '5', '--out', a, '--force')[0] == 0
    assert open(a).read() == text and sorted(os.listdir(tmp_path)) == ['a.csv', 'b.csv', 'c.csv']
    assert run(capsys, *argv, '--seed', '5', '--out', '-')[1] == text


def _png(path):
    data = open(path, 'rb').read()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000
    image = imread(path)
    assert image.shape[:2] == (420, 640)
    return image


def test_plot_widths_is_a_real_png(capsys, tmp_path):
    path = str(tmp_path / 'w.png')
    assert run(capsys, 'plot', 'regnetx_400mf', '--out', path)[0] == 0
    image = _png(path)
    rgb = image[..., :3].reshape(-1, 3)
    assert len(np.unique(rgb, axis=0)) > 50 and rgb.std() > 0.05  # drawn, not blank


def test_plot_edf_of_complexity_and_a_user_error_column(capsys, tmp_path):
    paths = []
    for space in ('anynetx-a', 'regnetx'):
        paths.append(str(tmp_path / f'{space}.csv'))
        run(capsys, 'sample', '--space', space, '--n', '20', '--out', paths[-1], '--quiet')
    assert run(capsys, 'plot', '--edf', *paths, '--out', str(tmp_path / 'f.png'))[0] == 0
    _png(str(tmp_path / 'f.png'))
    rows = list(csv.DictReader(open(paths[0])))
    with open(paths[0], 'w', newline='') as f:  # a user adds the errors of their runs
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) + ['error'])
        writer.writeheader()
        writer.writerows(dict(r, error=40 + i % 7) for i, r in enumerate(rows))
    assert run(capsys, 'plot', '--edf', paths[0], '--column', 'error',
               '--out', str(tmp_path / 'e.png'))[0] == 0
    _png(str(tmp_path / 'e.png'))
    code, _, err = run(capsys, 'plot', '--edf', paths[1], '--column', 'error',
                       '--out', str(tmp_path / 'g.png'))
    assert code == 1 and "no column 'error'" in err and not os.path.exists(tmp_path / 'g.png')


def test_progress_reports_at_most_once_a_second():
    ticks, stream = iter([0.0, 0.5, 1.2, 1.7, 2.3]), io.StringIO()
    progress = Progress('fit: {0}/{1}', stream=stream, clock=lambda: next(ticks))
    for i in range(1, 5):
        progress(i, 4)
    assert stream.getvalue() == 'fit: 2/4\nfit: 4/4\n'


def test_installed_console_script():
    script = os.path.join(os.path.dirname(sys.executable), 'mmregnet')
    done = subprocess.run([script, 'list', '--family', 'x', '--format', 'csv'],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 13 and done.stdout.startswith('name,params,flops')
