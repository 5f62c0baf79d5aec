"""Loading refuses weights that do not fit: tools/test.py, load_from/--resume, Pretrained init.

A checkpoint whose backbone is another arch used to be evaluated after a few
hundred "size mismatch" warnings, with most of the backbone random. Now it is
refused before anything runs, naming the arch the checkpoint holds (read off
its shapes) and the arch the config builds; ``--allow-partial`` (or
``allow_partial=True`` in a Pretrained init_cfg) loads what fits on purpose.
NaN or infinite weights are refused the same way (``--allow-nonfinite``).
"""
import importlib.util
import os
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope

from mmregnet import RegNet, stage_channels
from mmregnet.detection import check_neck_channels
from mmregnet.errors import InputError, run_guarded
from mmregnet.runtime import find_resumable_checkpoint, resolve_resume
from mmregnet.checkpoint.fit import check_checkpoint_fits

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / 'configs' / 'regnet' /
             'pointpillars_hv_regnet-400mf_fpn_sbn-all_1xb4-demo_nus-3d.py')


def _tool_main(name):
    spec = importlib.util.spec_from_file_location(f'tool_{name}', REPO / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _detector(arch=None):
    from mmdet3d.registry import MODELS
    cfg = Config.fromfile(CONFIG)
    if arch is not None:
        cfg.model.pts_backbone.arch = arch
        cfg.model.pts_neck.in_channels = stage_channels(arch, (1, 2, 3))
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmdet3d'):
        return MODELS.build(cfg.model)


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp('weights')
    model = _detector()
    paths = dict(right=folder / 'right.pth', other=folder / 'other.pth', nan=folder / 'nan.pth')
    torch.save({'state_dict': model.state_dict()}, paths['right'])
    torch.save({'state_dict': _detector('regnetx_1.6gf').state_dict()}, paths['other'])
    state = model.state_dict()
    state['pts_backbone.layer2.0.conv2.weight'][0, 0, 0, 0] = float('nan')
    torch.save({'state_dict': state}, paths['nan'])
    return model, paths


def test_tools_test_refuses_a_checkpoint_of_another_arch(checkpoints, tmp_path, capsys):
    _, paths = checkpoints
    code = _tool_main('test')([CONFIG, str(paths['other']), '--work-dir',
                               str(tmp_path / 'work'), '--metrics-out',
                               str(tmp_path / 'metrics.json')])
    err = capsys.readouterr().err
    line = [e for e in err.splitlines() if e.startswith('tools/test.py: error: ')]
    assert code == 1 and len(line) == 1, err
    assert ('does not fit the model: its pts_backbone is regnetx_1.6gf, but the config builds '
            'regnetx_400mf;') in line[0]
    assert 'differ in shape' in line[0] and '--allow-partial' in line[0]
    assert not (tmp_path / 'metrics.json').exists()


def test_allow_partial_and_allow_nonfinite_let_it_through(checkpoints):
    model, paths = checkpoints
    assert check_checkpoint_fits(model, str(paths['right'])) == []
    with pytest.raises(InputError, match='its pts_backbone is regnetx_1.6gf'):
        check_checkpoint_fits(model, str(paths['other']))
    notes = check_checkpoint_fits(model, str(paths['other']), allow_partial=True)
    assert len(notes) == 1 and notes[0].startswith('loading only the tensors that fit')
    with pytest.raises(InputError, match=r'non-finite weights: pts_backbone.layer2.0.conv2.weight'
                                         r' \(1 of \d+ values'):
        check_checkpoint_fits(model, str(paths['nan']))
    notes = check_checkpoint_fits(model, str(paths['nan']), allow_nonfinite=True)
    assert notes and 'non-finite weights (allowed)' in notes[0]


def test_pretrained_init_of_our_backbone_refuses_another_arch(tmp_path):
    other = tmp_path / 'x16.pth'
    torch.save({'state_dict': RegNet('regnetx_1.6gf').state_dict()}, other)
    net = RegNet('regnetx_400mf', init_cfg=dict(type='Pretrained', checkpoint=str(other)))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(InputError, match='the weights are regnetx_1.6gf, but the config builds '
                                         'regnetx_400mf'):
        net.init_weights()
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    net = RegNet('regnetx_400mf', init_cfg=dict(type='Pretrained', checkpoint=str(other),
                                                allow_partial=True))
    net.init_weights()  # loads what fits, as asked
    with pytest.raises(ValueError, match='init_cfg allow_partial must be True or False'):
        RegNet('regnetx_400mf', init_cfg=dict(type='Pretrained', checkpoint=str(other),
                                              allow_partial='yes'))


def test_pretrained_init_keeps_working_for_a_converted_checkpoint_with_a_head(tmp_path):
    from mmregnet.convert.cli import main as convert
    src = RegNet('regnetx_200mf')
    torch.save(dict(src.state_dict(), **{'fc.weight': torch.zeros(10, 368),
                                         'fc.bias': torch.zeros(10)}), tmp_path / 'src.pth')
    assert convert([str(tmp_path / 'src.pth'), str(tmp_path / 'w.pth'), '--keep-head']) == 0
    net = RegNet('regnetx_200mf', init_cfg=dict(type='Pretrained',
                                                checkpoint=str(tmp_path / 'w.pth')))
    with pytest.raises(InputError, match="under 'backbone.': set prefix='backbone.'"):
        net.init_weights()  # mmengine would have loaded nothing
    net = RegNet('regnetx_200mf', init_cfg=dict(type='Pretrained', prefix='backbone.',
                                                checkpoint=str(tmp_path / 'w.pth')))
    net.init_weights()
    assert all(torch.equal(v, src.state_dict()[k]) for k, v in net.state_dict().items())


def test_resume_logs_each_skipped_checkpoint_and_why(tmp_path, capfd):
    torch.save({'state_dict': {'w': torch.ones(2)}}, tmp_path / 'epoch_1.pth')
    data = (tmp_path / 'epoch_1.pth').read_bytes()
    (tmp_path / 'epoch_3.pth').write_bytes(data[:len(data) // 2])
    (tmp_path / 'epoch_2.pth').write_bytes(b'')
    skipped = []
    assert find_resumable_checkpoint(str(tmp_path), skipped) == str(tmp_path / 'epoch_1.pth')
    assert [(os.path.basename(p), why.split(' (')[0]) for p, why in skipped] == [
        ('epoch_3.pth', 'truncated or not a zip'), ('epoch_2.pth', 'empty')]
    cfg = Config(dict(work_dir=str(tmp_path)))
    MMLogger.get_instance(f'resume-{tmp_path.name}')  # the current logger, writing to this capture
    assert resolve_resume(cfg, 'auto') == str(tmp_path / 'epoch_1.pth')
    out, err = capfd.readouterr()
    logged = out + err
    assert f'--resume: skipped {tmp_path / "epoch_3.pth"}: truncated or not a zip' in logged
    assert f'--resume: skipped {tmp_path / "epoch_2.pth"}: empty (0 bytes)' in logged


def test_the_neck_check_is_one_line_and_exit_1(checkpoints, capsys):
    model = _detector()
    model.pts_neck.in_channels = [64, 160, 380]
    assert run_guarded('tools/train.py', lambda: check_neck_channels(model)) == 1
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith('tools/train.py: error: pts_neck.in_channels=')
    assert 'Set pts_neck.in_channels=[64, 160, 384]' in err
