"""Writing a user's output whole or not at all: the one atomic writer of mmregnet.

Every tool that writes a file or a folder for the user goes through
:func:`atomic_output` or :func:`atomic_folder`:

- the output appears complete or not at all: it is written under a hidden
  temporary name beside the destination and renamed onto it at the end;
- an existing destination is replaced only with ``force=True``;
- on an exception, Ctrl-C (SIGINT) or SIGTERM the temporary is removed; the
  temporary's name holds the writer's process id, so after a SIGKILL the next
  write to the same destination removes what the dead process left;
- the temporary is synced to disk before the rename, so a crash right after
  it cannot leave a named but empty file;
- a failure of the file system (no room, quota, read-only, permission, the
  folder removed, an I/O error) raises :class:`~mmregnet.faults.WriteError`:
  one line naming the destination, the operation and the cause, with the
  bytes needed and free when room ran out (:mod:`mmregnet.faults`);
- files are created ``0644`` and folders ``0755`` (not ``mkstemp``'s ``0600``),
  so outputs are readable by the other users of a shared machine.

Example:
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> path = os.path.join(folder, 'out.txt')
    >>> with atomic_output(path) as tmp:
    ...     with open(tmp, 'w') as f:
    ...         _ = f.write('done')
    >>> open(path).read(), oct(os.stat(path).st_mode & 0o777), os.listdir(folder)
    ('done', '0o644', ['out.txt'])
"""
import contextlib
import os
import re
import shutil
import tempfile
from typing import Iterator, List, Optional

from .faults import Needed, write_failure
from .interrupts import interruption, signals_held, sigterm_raises

__all__ = ['FILE_MODE', 'FOLDER_MODE', 'atomic_folder', 'atomic_output', 'check_destination',
           'remove_stale_parts', 'remove_stale_parts_in', 'write_bytes']

FILE_MODE = 0o644
FOLDER_MODE = 0o755
_PART = re.compile(r'^\.(?P<name>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.part$')


def _alive(pid: int) -> bool:
    """Whether a process with this id exists (another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_dead_parts(folder: str, name: Optional[str]) -> List[str]:
    """Removes the temporaries of dead writers in ``folder`` (for ``name``, or all)."""
    removed = []
    try:
        entries = os.listdir(folder)
    except OSError:
        return removed
    for entry in entries:
        match = _PART.match(entry)
        if not match or (name is not None and match['name'] != name) or \
                _alive(int(match['pid'])):
            continue
        stale = os.path.join(folder, entry)
        _remove(stale)
        removed.append(stale)
    return removed


def remove_stale_parts(path: str) -> List[str]:
    """Removes the temporaries that dead writers left for ``path``; returns them.

    A temporary of a live process (a concurrent writer) is left alone.

    Args:
        path: The destination file or folder.
    """
    folder, name = os.path.split(os.path.abspath(path))
    return _remove_dead_parts(folder, name)


def remove_stale_parts_in(folder: str) -> List[str]:
    """Removes every temporary that dead writers left in ``folder``; returns them.

    For a run that starts where a killed one wrote (a training work dir),
    before it knows which outputs it will write again.

    Args:
        folder: The folder.
    """
    return _remove_dead_parts(os.path.abspath(folder), None)


def _read_only(folder: str) -> bool:
    """Whether ``folder``'s file system is mounted read-only."""
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # AttributeError: no statvfs (Windows)
        return False


def check_destination(path: str, force: bool, kind: str = 'file') -> str:
    """Checks that ``path`` can be written; returns its absolute folder.

    Args:
        path: The destination.
        force: Whether an existing destination may be replaced.
        kind: ``'file'`` or ``'folder'``, what will be written.

    Raises:
        FileExistsError: ``path`` exists and ``force`` is False.
        IsADirectoryError: A file is to be written where a folder is (or back).
        FileNotFoundError: The parent folder does not exist.
        PermissionError: The parent folder is not writable.
    """
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f'output {path}: its folder {folder} does not exist')
    if not os.access(folder, os.W_OK | os.X_OK):
        why = 'is on a read-only file system' if _read_only(folder) else 'is not writable'
        raise PermissionError(f'output {path}: the folder {folder} {why}')
    if os.path.lexists(path):
        is_dir = os.path.isdir(path) and not os.path.islink(path)
        if is_dir != (kind == 'folder'):
            raise IsADirectoryError(f'output {path}: expected a {kind} path, but a '
                                    f"{'folder' if is_dir else 'file'} is there")
        if not force:
            raise FileExistsError(f'output {path} exists; pass --force to replace it')
    return folder


def _temp_prefix(path: str) -> str:
    return f'.{os.path.basename(os.path.abspath(path))}.{os.getpid()}.'


def _sync(path: str) -> None:
    """Flushes a file's data, or a folder's files, to the disk."""
    if os.path.isdir(path):
        for root, _, files in os.walk(path):
            for name in files:
                _sync(os.path.join(root, name))
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_folder(folder: str) -> None:
    """Makes a rename in ``folder`` durable where the file system allows syncing folders."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove(path: Optional[str]) -> None:
    if path is None:
        return
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


@contextlib.contextmanager
def atomic_output(path: str, force: bool = False, needed: Needed = None) -> Iterator[str]:
    """Yields a temporary file path beside ``path``; moves it onto ``path`` on success.

    Args:
        path: The file to write.
        force: Whether an existing ``path`` may be replaced.
        needed: The file's size in bytes when known, or a function that
            computes it; only for the message when room runs out.

    Yields:
        The temporary path to write (in the same folder, so the rename is atomic).

    Raises:
        The errors of :func:`check_destination`; :class:`~mmregnet.interrupts.Interrupted`
        on SIGTERM; :class:`~mmregnet.faults.WriteError` when the file system fails the write.
    """
    folder = check_destination(path, force, 'file')
    remove_stale_parts(path)
    with sigterm_raises():
        tmp, stage = None, 'create'
        try:
            with signals_held():  # a Ctrl-C lands after the temporary is known, not before
                fd, tmp = tempfile.mkstemp(dir=folder, prefix=_temp_prefix(path), suffix='.part')
                os.close(fd)
            stage = 'write'
            yield tmp
            stage = 'sync'
            os.chmod(tmp, FILE_MODE)
            _sync(tmp)
            stage = 'rename'
            os.replace(tmp, path)
            tmp = None
            _sync_folder(folder)
        except Exception as e:  # noqa: BLE001 - a failure of the file system gets its words
            failure = None if interruption(e) else write_failure(path, stage, e, tmp, needed)
            if failure is None:
                raise
            raise failure from e
        finally:
            _remove(tmp)


@contextlib.contextmanager
def atomic_folder(path: str, force: bool = False, needed: Needed = None) -> Iterator[str]:
    """Yields a temporary folder beside ``path``; moves it onto ``path`` on success.

    An existing ``path`` (with ``force``) is replaced only after the new folder
    is complete; it is moved aside first, so a failure never leaves neither.

    Args:
        path: The folder to write.
        force: Whether an existing ``path`` may be replaced.
        needed: The folder's size in bytes when known (see :func:`atomic_output`).

    Yields:
        The temporary folder (``0755``) to fill.

    Raises:
        The errors of :func:`check_destination`; :class:`~mmregnet.interrupts.Interrupted`
        on SIGTERM; :class:`~mmregnet.faults.WriteError` when the file system fails the write.
    """
    folder = check_destination(path, force, 'folder')
    remove_stale_parts(path)
    with sigterm_raises():
        tmp = old = None
        stage = 'create'
        try:
            with signals_held():
                tmp = tempfile.mkdtemp(dir=folder, prefix=_temp_prefix(path), suffix='.part')
            os.chmod(tmp, FOLDER_MODE)
            stage = 'write'
            yield tmp
            stage = 'sync'
            _sync(tmp)
            stage = 'rename'
            if os.path.lexists(path):
                old = tempfile.mkdtemp(dir=folder, prefix=_temp_prefix(path), suffix='.part')
                os.rmdir(old)
                os.rename(path, old)
            try:
                os.rename(tmp, path)
            except OSError:
                if old:
                    os.rename(old, path)
                    old = None
                raise
            tmp = None
            _sync_folder(folder)
        except Exception as e:  # noqa: BLE001 - a failure of the file system gets its words
            failure = None if interruption(e) else write_failure(path, stage, e, tmp, needed)
            if failure is None:
                raise
            raise failure from e
        finally:
            for leftover in (tmp, old):
                _remove(leftover)


def write_bytes(path: str, data: bytes, force: bool = False) -> None:
    """Writes ``data`` to ``path`` whole or not at all (:func:`atomic_output`).

    Args:
        path: The file.
        data: Its bytes.
        force: Whether an existing ``path`` may be replaced.
    """
    with atomic_output(path, force, needed=len(data)) as tmp:
        with open(tmp, 'wb') as f:
            f.write(data)
