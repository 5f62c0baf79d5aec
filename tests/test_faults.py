"""The fault contract of every writer: a write the machine fails (no room, quota, read-only
file system, permission, a folder removed mid-run, an I/O error) ends with exit 1 and one
line naming the path, the operation and the cause, with the bytes needed and free when room
ran out, and leaves nothing half-written (mmregnet.faults, mmregnet.fileio, errors.run_guarded).

Failures are injected in subprocesses (tests/fault_injection.py) at chosen bytes and steps of
a conversion, the dataset generator and `mmregnet plot`; tests/test_fault_checkpoints.py does
the same for training, testing and the export. Where this machine lets root mount a tmpfs,
a real full disk too.
"""
import contextlib
import errno
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest
import torch

from mmregnet import RegNet
from mmregnet.errors import run_guarded
from mmregnet.faults import WriteError, chain, describe, free_bytes
from mmregnet.fileio import atomic_folder, atomic_output, write_bytes

from fault_injection import install

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INJECT = os.path.join(REPO, 'tests', 'fault_injection.py')
CONVERTER = os.path.join(REPO, 'tools', 'model_converters', 'regnet2mmdet.py')
ENV = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=os.pathsep.join(
    [os.path.join(REPO, 'tests'), REPO, os.environ.get('PYTHONPATH', '')]))
CAUSES = {'ENOSPC': 'no space left on its file system', 'EDQUOT': 'the disk quota is exceeded',
          'EROFS': 'its file system is read-only', 'EACCES': 'permission denied',
          'EIO': 'an input/output error (the device failed)'}
WHERE = {'create': ' (creating its temporary file)', 'write': '',
         'sync': ' (syncing it to disk)', 'rename': ' (renaming the finished output into place)'}


def inject(script, *args, match, code='ENOSPC', at='write', after=0, env=None):
    """Runs ``script`` with writes to paths matching ``match`` failing (fault_injection.py)."""
    command = [sys.executable, INJECT, '--match', match, '--errno', code, '--at', at,
               '--after', str(after), script, *map(str, args)]
    return subprocess.run(command, env=env or ENV, text=True, capture_output=True, timeout=600)


def error_line(result, prog):
    """The one error line of a failed tool: exit 1, no traceback, the last line of stderr."""
    assert result.returncode == 1, (result.stdout[-3000:], result.stderr[-3000:])
    assert 'Traceback' not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith(f'{prog}: error:')]
    assert len(lines) == 1 and result.stderr.rstrip().endswith(lines[0]), result.stderr[-3000:]
    return lines[0]


def room(line):
    """``(needed, free)`` of a room message (needed None for 'needs more than ... free')."""
    match = re.search(r'needs (\d+) bytes(?: = [\d.]+ [MG]iB)?; (\d+) bytes(?: = [\d.]+ [MG]iB)? '
                      r'were free', line)
    if match:
        return int(match[1]), int(match[2])
    match = re.search(r'needs more than the (\d+) bytes', line)
    return (None, int(match[1])) if match else None


@contextlib.contextmanager
def failing(match, code, at='write', after=0):
    """Within the block, writes to paths matching ``match`` fail (tests/fault_injection.py)."""
    undo = install(match, getattr(errno, code), at, after)
    try:
        yield
    finally:
        undo()


@contextlib.contextmanager
def tmpfs(size):
    """A fresh tmpfs of ``size`` bytes mounted on a temporary folder; skips where impossible."""
    if not sys.platform.startswith('linux') or os.geteuid() != 0:
        pytest.skip('a real full disk needs root on Linux to mount a small tmpfs')
    folder = tempfile.mkdtemp(prefix='mmregnet-tmpfs-')
    mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', folder],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        os.rmdir(folder)
        pytest.skip(f'cannot mount a tmpfs here: {mounted.stderr.strip()}')
    try:
        yield folder
    finally:
        gc.collect()  # files a failed writer still holds open
        if subprocess.run(['umount', folder]).returncode != 0:
            subprocess.run(['umount', '-l', folder], check=True)
        os.rmdir(folder)


# --- the writer and the words --------------------------------------------------------------

@pytest.mark.parametrize('name', sorted(CAUSES))
def test_each_cause_is_one_line_in_words(tmp_path, name):
    code = getattr(errno, name)
    path = str(tmp_path / 'out.bin')
    with pytest.raises(WriteError) as caught:
        with atomic_output(path, needed=1234) as tmp:
            with open(tmp, 'wb') as f:
                f.write(b'x' * 100)
            raise OSError(code, os.strerror(code))
    line = str(caught.value)
    assert line.startswith(f'cannot write {path}: {CAUSES[name]}')
    assert ('needs 1234 bytes' in line) == (name in ('ENOSPC', 'EDQUOT'))
    if name == 'ENOSPC':
        assert room(line) == (1234, free_bytes(path))
    assert os.listdir(tmp_path) == []
    assert run_guarded('tool', lambda: write_bytes(path, b'x') or _raise(code)) == 1


def _raise(code):
    raise OSError(code, os.strerror(code))


def test_a_library_error_hiding_the_cause_is_traced_to_it(tmp_path, capsys):
    """torch's zip writer answers a full disk with a RuntimeError whose context is the OSError."""
    def write():
        with atomic_output(str(tmp_path / 'w.pth')):
            try:
                raise OSError(errno.ENOSPC, 'No space left on device')
            except OSError:
                raise RuntimeError('[enforce fail at inline_container.cc:672] . unexpected pos')
    assert run_guarded('tool', write) == 1
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'unexpected' not in err
    assert err.startswith(f'tool: error: cannot write {tmp_path / "w.pth"}: no space left')
    # a RuntimeError of the writer's own, the disk fine: a bug, not a fault
    assert run_guarded('tool', lambda: _bug(str(tmp_path / 'x.pth'))) == 2
    assert 'unexpected RuntimeError: boom' in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def _bug(path):
    with atomic_output(path) as tmp:
        open(tmp, 'wb').write(b'half')
        raise RuntimeError('boom')


@pytest.mark.parametrize('step, patched', [('sync', 'fsync'), ('rename', 'replace')])
def test_the_last_steps_fail_whole_too(tmp_path, monkeypatch, step, patched):
    path = tmp_path / 'a.txt'
    path.write_text('old')

    def broken(*args):
        raise OSError(errno.EIO, 'Input/output error')
    monkeypatch.setattr(os, patched, broken)
    with pytest.raises(WriteError, match=re.escape(
            f'cannot write {path}{WHERE[step]}: an input/output error')):
        with atomic_output(str(path), force=True) as tmp:
            open(tmp, 'w').write('new')
    monkeypatch.undo()
    assert path.read_text() == 'old' and os.listdir(tmp_path) == ['a.txt']


def test_a_folder_removed_mid_run_is_named(tmp_path):
    folder = tmp_path / 'sub'
    folder.mkdir()
    with pytest.raises(WriteError) as caught:
        with atomic_output(str(folder / 'a.bin')) as tmp:
            shutil.rmtree(folder)
            raise RuntimeError('enforce fail')  # a writer that hides the cause
    assert str(caught.value) == f'cannot write {folder / "a.bin"}: its folder {folder} no ' \
        'longer exists'
    with pytest.raises(WriteError, match='out: its temporary was removed while it was written'):
        with atomic_folder(str(tmp_path / 'out')) as tmp:
            open(os.path.join(tmp, 'x'), 'w').close()
            shutil.rmtree(tmp)
            open(os.path.join(tmp, 'y'), 'w').close()
    assert os.listdir(tmp_path) == []


def test_other_os_errors_name_their_path_in_words():
    assert describe(OSError(errno.EACCES, 'Permission denied', '/x/y')) == '/x/y: permission denied'
    assert describe(FileNotFoundError(errno.ENOENT, 'No such file or directory', 'a.py')) == \
        'a.py: no such file or directory'
    assert describe(FileExistsError('output a exists; pass --force to replace it')) == \
        'output a exists; pass --force to replace it'


def test_a_real_full_disk_under_a_file_and_a_folder():
    with tmpfs(1 << 20) as disk:
        path = os.path.join(disk, 'big.bin')
        with pytest.raises(WriteError) as caught:
            write_bytes(path, b'x' * 3_000_000)
        assert room(str(caught.value)) == (3_000_000, 1 << 20)
        with pytest.raises(WriteError) as caught:
            with atomic_folder(os.path.join(disk, 'out')) as tmp:
                for i in range(4):
                    with open(os.path.join(tmp, f'{i}.bin'), 'wb') as f:
                        f.write(b'y' * 400_000)
        assert str(caught.value).startswith(f'cannot write {disk}/out: no space left')
        assert room(str(caught.value)) == (None, 1 << 20)
        assert os.listdir(disk) == []


def test_a_writer_hiding_the_cause_on_a_real_full_disk():
    """torch's C++ writer, given a path, fails a full disk with a bare RuntimeError and keeps
    the file open: the file system is asked (a probe written to the temporary), and the room
    counts what the temporary holds."""
    with tmpfs(1 << 20) as disk:
        path = os.path.join(disk, 'w.pth')
        try:
            with atomic_output(path, needed=lambda: 4_000_000) as tmp:
                try:
                    torch.save({'w': torch.zeros(1_000_000)}, tmp)
                except RuntimeError as e:
                    assert not any(isinstance(c, OSError) for c in chain(e))
                    raise
        except WriteError as e:
            line, cause = str(e), e.__cause__
        assert isinstance(cause, RuntimeError) and 'enforce fail' in str(cause)
        del cause
        gc.collect()  # torch's writer goes with the traceback, and its file with it
        assert line.startswith(f'cannot write {path}: no space left on its file system')
        assert room(line) == (4_000_000, 1 << 20) and os.listdir(disk) == []


# --- the converter -------------------------------------------------------------------------

@pytest.fixture(scope='module')
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp('convert') / 'src.pth'
    torch.save(RegNet('regnetx_200mf').state_dict(), path)
    return path


@pytest.mark.parametrize('code, at, after', [
    ('ENOSPC', 'write', 0), ('ENOSPC', 'write', 1), ('ENOSPC', 'write', 3_000_000),
    ('EDQUOT', 'write', 5_000_000), ('EIO', 'write', 100), ('EIO', 'sync', 0),
    ('EROFS', 'rename', 0), ('EACCES', 'create', 0)])
def test_converter_fails_whole_at_any_point(source, tmp_path, capsys, code, at, after):
    from mmregnet.convert.cli import main
    dst = tmp_path / 'dst.pth'
    with failing(r'/\.?dst\.pth', code, at, after):
        assert main([str(source), str(dst)]) == 1
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith(
        f'regnet2mmdet: error: cannot write {dst}{WHERE[at]}: {CAUSES[code]}'), err
    assert os.listdir(tmp_path) == []
    assert main([str(source), str(dst)]) == 0 and os.listdir(tmp_path) == ['dst.pth']
    if code in ('ENOSPC', 'EDQUOT'):  # the size of the file the converter writes
        assert int(re.search(r'needs (\d+) bytes', err)[1]) == os.path.getsize(dst)


def test_converter_subprocess_out_of_room_mid_write(source, tmp_path):
    dst = tmp_path / 'dst.pth'
    line = error_line(inject(CONVERTER, source, dst, match=r'/\.?dst\.pth', after=3_000_000),
                      'regnet2mmdet')
    assert line.startswith(f'regnet2mmdet: error: cannot write {dst}: no space left on its file '
                           'system (needs ')
    assert os.listdir(tmp_path) == []


def test_converter_on_a_real_full_disk(source):
    """The issue's case: torch.save runs out of room mid-write (a 9 MB file, 4 MB free)."""
    with tmpfs(4 << 20) as disk:
        dst = os.path.join(disk, 'dst.pth')
        result = subprocess.run([sys.executable, CONVERTER, str(source), dst], env=ENV,
                                capture_output=True, text=True)
        line = error_line(result, 'regnet2mmdet')
        assert line.startswith(f'regnet2mmdet: error: cannot write {dst}: no space left on its '
                               'file system (needs ')
        needed, free = room(line)
        assert free == 4 << 20 and 8_000_000 < needed < 12_000_000
        assert os.listdir(disk) == []


# --- the dataset generator and mmregnet plot -----------------------------------------------

def test_generator_and_plot_name_their_output(tmp_path):
    out = tmp_path / 'nus'
    line = error_line(inject(os.path.join(REPO, 'tools', 'create_synthetic_data.py'), 'nuscenes',
                             '--root', out, '--train-scenes', 1, '--val-scenes', 1,
                             '--test-scenes', 1, '--samples-per-scene', 1, '--quiet',
                             match=r'\.bin$', after=1000), 'create_synthetic_data.py')
    assert line.startswith(f'create_synthetic_data.py: error: cannot write {out}: no space '
                           'left on its file system (needs more than the ')
    assert os.listdir(tmp_path) == []
    plot = tmp_path / 'w.png'
    line = error_line(inject('module:mmregnet.cli', 'plot', 'regnetx_400mf', '--out', plot,
                             match=r'w\.png', code='EROFS', at='rename'), 'mmregnet plot')
    assert line == f'mmregnet plot: error: cannot write {plot}{WHERE["rename"]}: ' \
        f'{CAUSES["EROFS"]}'
    assert os.listdir(tmp_path) == []
