"""Bad input: one clear line, a non-zero exit, no traceback, no output file; and file safety."""
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmdet.models.backbones import ResNet

from mmregnet import RegNet
from mmregnet.convert.cli import main
from mmregnet.convert.safe_io import save_checkpoint
from mmregnet.errors import run_guarded

from library_nets import library_net

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / 'tools' / 'model_converters' / 'regnet2mmdet.py'


class _RunsCode:
    """A pickle that would create a file when unpickled without weights_only."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), 'w'))


def _write(path, kind, tmp_path):
    if kind == 'directory':
        path.mkdir()
    elif kind == 'empty':
        path.write_bytes(b'')
    elif kind == 'text':
        path.write_text('model: regnetx_400mf\nlr: 0.02\n')
    elif kind == 'truncated':
        torch.save(RegNet('regnetx_200mf').state_dict(), path)
        path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
    elif kind == 'list pickle':
        torch.save([1, 2, 3], path)
    elif kind == 'dict of strings':
        torch.save({'model': 'regnet', 'epoch': 3}, path)
    elif kind == 'code pickle':
        torch.save({'state_dict': {}, 'hook': _RunsCode(tmp_path / 'ran')}, path)
    elif kind == 'preset mismatch':  # torchvision's X-400MF: no preset has its widths
        torch.save(library_net('torchvision', 'regnet_x_400mf').state_dict(), path)
    elif kind == 'resnet50':
        torch.save(ResNet(50).state_dict(), path)
    elif kind != 'missing':
        torch.save(RegNet('regnetx_200mf').state_dict(), path)


CASES = {
    'missing': ([], 'does not exist'),
    'directory': ([], 'is a directory'),
    'empty': ([], 'is empty'),
    'truncated': ([], 'truncated or corrupt'),
    'text': ([], 'is a text file'),
    'list pickle': ([], 'holds a list'),
    'dict of strings': ([], "entry 'model' holds a str"),
    'code pickle': ([], 'refusing to load'),
    'resnet50': ([], 'not a RegNet: the stem conv is 7x7'),
    'preset mismatch': (['--arch', 'regnetx_400mf'], 'do not fit regnetx_400mf'),
    'wrong verify arch': (['--verify-arch', 'regnetx_400mf'],
                          'do not load into RegNet(regnetx_400mf)'),
    'unknown arch': (['--arch', 'regnetx_9gf'], "unknown RegNet arch 'regnetx_9gf'"),
    'bad json arch': (['--arch', '{"w0": 24'], 'is not valid JSON'),
    'wrong source format': (['--src-format', 'torchvision'], 'no RegNet in the checkpoint'),
}


@pytest.mark.parametrize('kind', list(CASES))
def test_bad_input_is_one_line_nonzero_and_writes_nothing(tmp_path, capsys, kind):
    src, dst = tmp_path / 'src.pth', tmp_path / 'out' / 'dst.pth'
    dst.parent.mkdir()
    _write(src, kind, tmp_path)
    args, message = CASES[kind]
    assert main([str(src), str(dst)] + args) == 1
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith('regnet2mmdet: error: ') and message in err
    assert 'Traceback' not in err
    assert list(dst.parent.iterdir()) == []  # no output, no temporary file
    assert not (tmp_path / 'ran').exists()  # the pickled code never ran


def test_cli_process_exits_1_with_one_line(tmp_path):
    src = tmp_path / 'notes.txt'
    src.write_text('not a checkpoint\n')
    run = subprocess.run([sys.executable, str(TOOL), str(src), str(tmp_path / 'o.pth')],
                         capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 1 and run.stdout == ''
    assert run.stderr.count('\n') == 1 and 'is a text file' in run.stderr
    assert not (tmp_path / 'o.pth').exists()


def test_debug_shows_the_traceback(tmp_path, capsys):
    assert main([str(tmp_path / 'missing.pth'), str(tmp_path / 'o.pth'), '--debug']) == 1
    err = capsys.readouterr().err
    assert 'Traceback' in err and 'ConversionError' in err and 'does not exist' in err


def test_cli_prints_the_arch_dict_for_torchvision_widths(tmp_path, capsys):
    torch.save(library_net('torchvision', 'regnet_x_400mf').state_dict(), tmp_path / 'tv.pth')
    assert main([str(tmp_path / 'tv.pth'), str(tmp_path / 'out.pth'), '--verify']) == 0
    out = capsys.readouterr().out
    assert 'no preset has these widths' in out and 'arch=dict(w0=' in out
    assert 'verified: ' in out and 'bgr_to_rgb=True' in out
    meta = torch.load(tmp_path / 'out.pth', weights_only=True)['meta']
    assert meta['preset'] is None and meta['arch'] == meta['arch_dict']


@pytest.fixture
def source(tmp_path):
    path = tmp_path / 'src.pth'
    torch.save(RegNet('regnetx_200mf').state_dict(), path)
    return path


def test_source_is_never_overwritten(source, capsys):
    before = source.read_bytes()
    link = source.parent / 'link.pth'
    os.link(source, link)
    for dst in (source, link, source.parent / '.' / source.name):
        assert main([str(source), str(dst), '--force']) == 1
        assert 'refusing to overwrite the source' in capsys.readouterr().err
    assert source.read_bytes() == before


def test_existing_output_needs_force(source, capsys):
    dst = source.parent / 'dst.pth'
    dst.write_bytes(b'keep me')
    assert main([str(source), str(dst)]) == 1
    assert 'pass --force' in capsys.readouterr().err and dst.read_bytes() == b'keep me'
    assert main([str(source), str(dst), '--force']) == 0
    assert torch.load(dst, weights_only=True)['meta']['preset'] == 'regnetx_200mf'


@pytest.mark.parametrize('failure', [pickle.PicklingError, KeyboardInterrupt])
def test_interrupted_write_leaves_the_old_file_and_no_partial_one(tmp_path, failure):
    class FailsHalfway:
        def __reduce__(self):
            raise failure('interrupted while writing')

    dst = tmp_path / 'dst.pth'
    dst.write_bytes(b'previous')
    big = {'state_dict': {'w': torch.zeros(1 << 20)}, 'late': FailsHalfway()}
    with pytest.raises(failure):
        save_checkpoint(big, str(dst), force=True)
    assert dst.read_bytes() == b'previous' and os.listdir(tmp_path) == ['dst.pth']


def test_missing_output_folder_is_refused(source, capsys):
    assert main([str(source), str(source.parent / 'no' / 'dst.pth')]) == 1
    assert 'does not exist' in capsys.readouterr().err


def _nan_source(path):
    state = RegNet('regnetx_200mf').state_dict()
    state['layer2.0.conv1.weight'][0, 0] = float('nan')
    state['layer3.1.bn2.weight'][1] = float('inf')
    torch.save(state, path)


def test_nonfinite_weights_are_refused_unless_allowed(tmp_path, capsys):
    src, dst = tmp_path / 'nan.pth', tmp_path / 'dst.pth'
    _nan_source(src)
    assert main([str(src), str(dst), '--verify']) == 1
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'non-finite weights: layer2.0.conv1.weight (1 of' in err
    assert 'layer3.1.bn2.weight' in err and '--allow-nonfinite' in err and not dst.exists()
    assert main([str(src), str(dst), '--allow-nonfinite']) == 0
    out = capsys.readouterr().out
    assert 'the non-finite check (--allow-nonfinite): layer2.0.conv1.weight' in out
    assert torch.isnan(torch.load(dst, weights_only=True)['state_dict'][
        'layer2.0.conv1.weight']).sum() == 1


@pytest.mark.parametrize('extra,message', [
    (['--strides', '1', '2', '2'], 'one stride for each of the weights\' 4 stages, got 3'),
    (['--strides', '0', '2', '2', '2'], 'integers in 1..64'),
    (['--strides', '-1', '2', '2', '2'], 'integers in 1..64'),
    (['--stemless', '0'], '--stemless IN_CHANNELS must be an integer in 1..32768'),
    (['--stemless', '2000000'], 'got 2000000'),
    (['--state', 'ema'], '--state ema was asked for, but the checkpoint has no EMA weights'),
])
def test_target_options_are_checked_with_and_without_stemless(source, capsys, extra, message):
    dst = source.parent / 'dst.pth'
    assert main([str(source), str(dst), *extra]) == 1
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and message in err and not dst.exists()


def test_read_only_destination_folder_exits_1(source, capsys):
    folder = source.parent / 'ro'
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if not os.access(folder, os.W_OK):  # as root every folder is writable
            assert main([str(source), str(folder / 'dst.pth')]) == 1
            assert 'is not writable' in capsys.readouterr().err
    finally:
        folder.chmod(0o755)
    if sys.platform.startswith('linux'):  # sysfs refuses new files, even to root
        assert main([str(source), '/sys/dst.pth']) == 1
        err = capsys.readouterr().err
        assert err.count('\n') == 1 and 'cannot write /sys/dst.pth (creating its temporary ' \
            'file): permission denied' in err


def test_refusals_name_what_the_file_holds(tmp_path, capsys):
    src = tmp_path / 'np.pth'
    torch.save({'conv1.weight': np.zeros(3)}, src)
    assert main([str(src), str(tmp_path / 'o.pth')]) == 1
    assert "entry 'conv1.weight' holds a numpy.ndarray" in capsys.readouterr().err
    header = b'{"w": {"dtype": "F8_E8M0", "shape": [2], "data_offsets": [0, 2]}}'
    (tmp_path / 'f8.safetensors').write_bytes(len(header).to_bytes(8, 'little') + header + b'ab')
    assert main([str(tmp_path / 'f8.safetensors'), str(tmp_path / 'o.pth')]) == 1
    err = capsys.readouterr().err
    assert "tensor 'w' has dtype 'F8_E8M0', which is not supported" in err
    assert 'truncated' not in err


def test_stale_temporary_of_a_killed_run_is_removed(source, capsys):
    dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                          capture_output=True, text=True).stdout.strip()
    stale = source.parent / f'.dst.pth.{dead}.abc123.part'
    stale.write_bytes(b'half a checkpoint')
    assert main([str(source), str(source.parent / 'dst.pth')]) == 0
    assert f'removed {stale}' in capsys.readouterr().err and not stale.exists()


class _Signals:
    """Sends ``signum`` to this process while torch.save pickles it (mid-write)."""

    def __init__(self, signum):
        self.signum = signum

    def __reduce__(self):
        os.kill(os.getpid(), self.signum)
        return (int, (0,))


@pytest.mark.parametrize('signum,status', [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_during_the_write_exits_130_or_143_and_leaves_nothing(
        tmp_path, capsys, signum, status):
    dst = tmp_path / 'dst.pth'
    big = {'state_dict': {'w': torch.zeros(1 << 20)}, 'late': _Signals(signum)}
    assert run_guarded('regnet2mmdet', lambda: save_checkpoint(big, str(dst))) == status
    assert capsys.readouterr().err == 'regnet2mmdet: interrupted; nothing half-written was left\n'
    assert os.listdir(tmp_path) == []
