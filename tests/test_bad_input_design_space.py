"""The design-space commands' bad input: one line, exit 1, nothing written."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmregnet.cli import main
from mmregnet.design_space.population import MAX_NETS, read_column

REPO = Path(__file__).resolve().parents[1]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize('n', ['0', '-3', str(MAX_NETS + 1), str(10 ** 12)])
def test_sample_n_is_bounded(capsys, tmp_path, n):
    code, out, err = run(capsys, 'sample', '--space', 'regnetx', '--n', n, '--quiet',
                         '--out', str(tmp_path / 'p.csv'))
    assert code == 1 and out == '' and err.count('\n') == 1
    assert f'--n) must be a positive integer, at most {MAX_NETS}, got {int(n)}' in err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('cells,message', [
    ('flops\n1e9\nnan\n', "line 3: column 'flops' must be a finite number, got 'nan'"),
    ('flops\ninf\n', "got 'inf'"),
    ('flops\n-infinity\n', "got '-infinity'"),
    ('flops\n1\x00\n', 'flops'),
])
def test_plot_edf_refuses_non_finite_values(capsys, tmp_path, cells, message):
    population = tmp_path / 'pop.csv'
    population.write_text(cells)
    code, _, err = run(capsys, 'plot', '--edf', str(population), '--out', str(tmp_path / 'e.png'))
    assert code == 1 and err.count('\n') == 1 and message in err, err
    assert os.listdir(tmp_path) == ['pop.csv']


def test_a_binary_file_is_not_a_csv(capsys, tmp_path):
    population = tmp_path / 'pop.csv'
    population.write_bytes(bytes(range(128, 256)) * 4)
    code, _, err = run(capsys, 'plot', '--edf', str(population), '--out', str(tmp_path / 'e.png'))
    assert code == 1 and err.count('\n') == 1
    assert 'is not a CSV text file (byte 0x80 at offset 0 is not UTF-8)' in err
    with pytest.raises(ValueError, match='not a CSV text file'):
        read_column(str(population), 'flops')


@pytest.mark.parametrize('command', [
    ['sample', '--space', 'regnetx', '--n', '2', '--quiet'],
    ['plot', 'regnetx_400mf'],
])
def test_out_folder_with_force_is_refused_clearly(capsys, tmp_path, command):
    folder = tmp_path / 'out.png'
    folder.mkdir()
    code, _, err = run(capsys, *command, '--out', str(folder), '--force')
    assert code == 1 and err.count('\n') == 1
    assert f'output {folder}: expected a file path, but a folder is there' in err
    assert '[Errno' not in err and os.listdir(tmp_path) == ['out.png']


def test_plot_writes_through_a_temporary_and_keeps_the_format(capsys, tmp_path):
    code, out, _ = run(capsys, 'plot', 'regnetx_400mf', '--out', str(tmp_path / 'w.svg'))
    assert code == 0 and out.startswith('wrote')
    assert (tmp_path / 'w.svg').read_text().lstrip().startswith('<?xml')
    assert os.listdir(tmp_path) == ['w.svg']


@pytest.mark.parametrize('signum,status', [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupt_exits_130_or_143_and_leaves_nothing(tmp_path, signum, status):
    proc = subprocess.Popen([sys.executable, '-m', 'mmregnet.cli', 'sample', '--space',
                             'regnetx', '--n', str(MAX_NETS), '--quiet', '--out',
                             str(tmp_path / 'p.csv')], cwd=REPO, stderr=subprocess.PIPE,
                            text=True)
    try:
        start = time.monotonic()
        while not os.listdir(tmp_path):  # the temporary appears before the long part
            assert time.monotonic() - start < 120 and proc.poll() is None
            time.sleep(0.05)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == status
    assert err == 'mmregnet sample: interrupted; nothing half-written was left\n'
    assert os.listdir(tmp_path) == []
