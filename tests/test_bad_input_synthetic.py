"""The synthetic-data generator's bad input, interrupts and leftovers.

Bad options exit 1 with one line naming the option, the rule and the value,
before anything is written. An interrupted run (SIGINT, SIGTERM) exits 130 or
143 and leaves no staging folder; one left by a SIGKILLed run is removed by
the next run; the converter child process dies with its parent.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmregnet.synthetic import DatasetSpec, Options

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / 'tools' / 'create_synthetic_data.py'
sys.path.insert(0, str(TOOL.parent))
from create_synthetic_data import main  # noqa: E402

FAST = ['--samples-per-scene', '1', '--azimuth-steps', '60', '--objects-per-scene', '2',
        '--train-scenes', '1', '--val-scenes', '1', '--no-infos', '--quiet']


@pytest.mark.parametrize('dataset,extra,message', [
    ('nuscenes', ['--samples-per-scene', '0'], '--samples-per-scene (samples_per_scene) must '
                                               'be an integer in 1..1000, got 0'),
    ('nuscenes', ['--samples-per-scene', '100000'], 'got 100000'),
    ('nuscenes', ['--objects-per-scene', '5000'], '--objects-per-scene'),
    ('nuscenes', ['--sweeps', '999'], '--sweeps (sweeps_per_sample) must be an integer in 0..30'),
    ('nuscenes', ['--sweeps', '-1'], '--sweeps'),
    ('lyft', ['--sweeps', '-1'], '--sweeps'),
    ('nuscenes', ['--azimuth-steps', '1000000000'], '--azimuth-steps'),
    ('nuscenes', ['--annotation-range', 'nan'], '--annotation-range (annotation_range, m) must '
                                                'be a finite number in (0, 1000], got nan'),
    ('nuscenes', ['--annotation-range', 'inf'], 'got inf'),
    ('nuscenes', ['--annotation-range', '-5'], 'got -5.0'),
    ('nuscenes', ['--max-range', '0'], '--max-range'),
    ('nuscenes', ['--max-sweeps', '-5'], '--max-sweeps must be an integer in 0..30, got -5'),
    ('nuscenes', ['--seed', '-1'], '--seed (seed) must be an integer in 0..4294967295, got -1'),
    ('nuscenes', ['--seed', str(2 ** 40)], '--seed'),
    ('nuscenes', ['--train-scenes', '9'], 'v1.0-mini has 8 train and 2 val scenes'),
    ('lyft', ['--test-scenes', '0'], '--test-scenes (test scenes) must be an integer in 1..1000'),
    ('lyft', ['--train-scenes', '5000'], '--train-scenes'),
])
def test_bad_options_exit_1_naming_the_option(tmp_path, capsys, dataset, extra, message):
    root = tmp_path / 'data'
    assert main([dataset, '--root', str(root), *FAST, *extra]) == 1
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith('create_synthetic_data.py: error: ')
    assert message in err, err
    assert os.listdir(tmp_path) == []


def test_options_and_specs_check_themselves():
    with pytest.raises(ValueError, match='--azimuth-steps'):
        Options(azimuth_steps=True)
    with pytest.raises(ValueError, match="dataset must be 'nuscenes' or 'lyft', got 'kitti'"):
        DatasetSpec('kitti')
    with pytest.raises(ValueError, match='--val-scenes'):
        DatasetSpec('lyft', Options(), dict(train=1, val=None, test=1))


def test_dangling_symlink_root_is_refused_before_generating(tmp_path, capsys):
    root = tmp_path / 'link'
    root.symlink_to(tmp_path / 'gone')
    assert main(['nuscenes', '--root', str(root), *FAST]) == 1
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'is a symbolic link to' in err and 'does not exist' in err
    assert os.listdir(tmp_path) == ['link']


def _dead_pid():
    return subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                          capture_output=True, text=True).stdout.strip()


def test_a_killed_runs_staging_folder_is_removed_by_the_next_run(tmp_path, capsys):
    stale = tmp_path / f'.nus.{_dead_pid()}.k1ll3d.part'
    (stale / 'samples').mkdir(parents=True)
    assert main(['nuscenes', '--root', str(tmp_path / 'nus'), *FAST]) == 0
    assert f'removed {stale}' in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ['nus']


def _wait_for(predicate, what, limit=120.0):
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < limit, f'gave up waiting for {what}'
        time.sleep(0.05)


@pytest.mark.parametrize('signum,status', [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_generation_leaves_no_staging_folder(tmp_path, signum, status):
    root = tmp_path / 'nus'
    args = ['nuscenes', '--root', str(root), '--samples-per-scene', '400', '--azimuth-steps',
            '360', '--no-infos', '--quiet']
    proc = subprocess.Popen([sys.executable, str(TOOL), *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: any(p.name.endswith('.part') and any(p.iterdir())
                              for p in tmp_path.iterdir()), 'the staging folder')
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == status, err
    assert err.strip().endswith('create_synthetic_data.py: interrupted; nothing half-written '
                                'was left')
    assert os.listdir(tmp_path) == []


PARENT = r'''
import subprocess, sys, time
from mmregnet.processes import die_with_parent
child = subprocess.Popen(['sleep', '600'], preexec_fn=die_with_parent)
print(child.pid, flush=True)
time.sleep(600)
'''


def _gone(pid):
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] in ('Z', 'X')
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='PR_SET_PDEATHSIG is Linux')
def test_the_converter_child_dies_with_a_killed_parent():
    parent = subprocess.Popen([sys.executable, '-c', PARENT], cwd=REPO, stdout=subprocess.PIPE,
                              text=True)
    try:
        child = int(parent.stdout.readline())
        assert not _gone(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=60)
        _wait_for(lambda: _gone(child), 'the child to end')
    finally:
        parent.kill()
