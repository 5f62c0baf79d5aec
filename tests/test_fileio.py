"""mmregnet.fileio, the one atomic writer: whole or nothing, readable modes, no leftovers."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from mmregnet.fileio import atomic_folder, atomic_output, remove_stale_parts


def _write(path, text):
    with atomic_output(str(path), force=True) as tmp:
        with open(tmp, 'w') as f:
            f.write(text)


def test_files_are_0644_and_folders_0755(tmp_path):
    old = os.umask(0o077)  # a strict umask must not hide outputs from other users
    try:
        _write(tmp_path / 'a.json', '{}')
        with atomic_folder(str(tmp_path / 'out')) as tmp:
            open(os.path.join(tmp, 'x'), 'w').close()
    finally:
        os.umask(old)
    assert oct(os.stat(tmp_path / 'a.json').st_mode & 0o777) == '0o644'
    assert oct(os.stat(tmp_path / 'out').st_mode & 0o777) == '0o755'
    assert sorted(os.listdir(tmp_path)) == ['a.json', 'out']


def test_a_failure_leaves_the_old_output_and_nothing_else(tmp_path):
    _write(tmp_path / 'a.txt', 'old')
    with pytest.raises(RuntimeError):
        with atomic_output(str(tmp_path / 'a.txt'), force=True) as tmp:
            open(tmp, 'w').write('half')
            raise RuntimeError('boom')
    (tmp_path / 'out').mkdir()
    (tmp_path / 'out' / 'keep').write_text('old')
    with pytest.raises(RuntimeError):
        with atomic_folder(str(tmp_path / 'out'), force=True) as tmp:
            open(os.path.join(tmp, 'new'), 'w').close()
            raise RuntimeError('boom')
    assert (tmp_path / 'a.txt').read_text() == 'old'
    assert os.listdir(tmp_path / 'out') == ['keep']
    assert sorted(os.listdir(tmp_path)) == ['a.txt', 'out']


def test_force_replaces_a_folder_whole(tmp_path):
    (tmp_path / 'out').mkdir()
    (tmp_path / 'out' / 'stale').write_text('x')
    with atomic_folder(str(tmp_path / 'out'), force=True) as tmp:
        open(os.path.join(tmp, 'fresh'), 'w').close()
    assert os.listdir(tmp_path / 'out') == ['fresh']
    assert os.listdir(tmp_path) == ['out']


@pytest.mark.parametrize('make, kind, message', [
    (lambda p: p.write_text('x'), 'file', 'exists; pass --force'),
    (lambda p: p.mkdir(), 'file', 'expected a file path, but a folder is there'),
    (lambda p: p.write_text('x'), 'folder', 'expected a folder path, but a file is there'),
])
def test_destinations_are_checked_before_writing(tmp_path, make, kind, message):
    target = tmp_path / 'target'
    make(target)
    writer = atomic_output if kind == 'file' else atomic_folder
    with pytest.raises(OSError, match=message):
        with writer(str(target), force=message != 'exists; pass --force'):
            pass
    with pytest.raises(FileNotFoundError, match='does not exist'):
        with atomic_output(str(tmp_path / 'missing' / 'a.txt')):
            pass


def test_sigterm_removes_the_temporary_and_a_killed_writers_is_removed_next_time(tmp_path):
    code = textwrap.dedent(f"""
        import os, sys, time
        from mmregnet.fileio import atomic_output
        with atomic_output({str(tmp_path / 'big.bin')!r}) as tmp:
            open(tmp, 'wb').write(b'x' * 1000)
            print('writing', flush=True)
            time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == 'writing'
    child.send_signal(signal.SIGTERM)
    child.wait(timeout=30)
    assert os.listdir(tmp_path) == []
    # A SIGKILL leaves the temporary; the next write to the same file removes it.
    child = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == 'writing'
    child.kill()
    child.wait(timeout=30)
    leftovers = os.listdir(tmp_path)
    assert len(leftovers) == 1 and leftovers[0].endswith('.part')
    assert remove_stale_parts(str(tmp_path / 'big.bin')) == [str(tmp_path / leftovers[0])]
    assert os.listdir(tmp_path) == []
