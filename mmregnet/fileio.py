"""Writing a user's output whole or not at all: the one atomic writer of mmregnet.

Every tool that writes a file or a folder for the user goes through
:func:`atomic_output` or :func:`atomic_folder`:

- the output appears complete or not at all: it is written under a hidden
  temporary name beside the destination and renamed onto it at the end;
- an existing destination is replaced only with ``force=True``;
- on an exception, Ctrl-C (SIGINT) or SIGTERM the temporary is removed; the
  temporary's name holds the writer's process id, so after a SIGKILL the next
  write to the same destination removes what the dead process left;
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
import signal
import tempfile
import threading
from typing import Iterator, List

FILE_MODE = 0o644
FOLDER_MODE = 0o755
_PART = re.compile(r'^\.(?P<name>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.part$')


class Interrupted(Exception):
    """A signal (SIGTERM) ended the work; :attr:`exit_status` is ``128 + signal``."""

    def __init__(self, signum: int) -> None:
        super().__init__(f'interrupted by {signal.Signals(signum).name}')
        self.exit_status = 128 + signum


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Interrupted` so ``finally`` blocks run.

    SIGINT already raises ``KeyboardInterrupt``. Outside the main thread (where
    Python cannot set handlers) the block runs unchanged. The previous handler
    is restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _alive(pid: int) -> bool:
    """Whether a process with this id exists (another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_parts(path: str) -> List[str]:
    """Removes the temporaries that dead writers left for ``path``; returns them.

    A temporary of a live process (a concurrent writer) is left alone.

    Args:
        path: The destination file or folder.
    """
    folder, name = os.path.split(os.path.abspath(path))
    removed = []
    try:
        entries = os.listdir(folder)
    except OSError:
        return removed
    for entry in entries:
        match = _PART.match(entry)
        if not match or match['name'] != name or _alive(int(match['pid'])):
            continue
        stale = os.path.join(folder, entry)
        if os.path.isdir(stale) and not os.path.islink(stale):
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(stale)
        removed.append(stale)
    return removed


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
        raise PermissionError(f'output {path}: the folder {folder} is not writable')
    if os.path.lexists(path):
        is_dir = os.path.isdir(path) and not os.path.islink(path)
        if is_dir != (kind == 'folder'):
            raise IsADirectoryError(f'output {path}: expected a {kind} path, but a '
                                    f"{'folder' if is_dir else 'file'} is there")
        if not force:
            raise FileExistsError(f'output {path} exists; pass --force to replace it')
    return folder


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Holds SIGINT and SIGTERM back within the block; they arrive right after it.

    Creating a temporary and remembering its name is then one step: a signal
    cannot land in between and leave a temporary nobody removes. Outside the
    main thread, or without ``pthread_sigmask``, the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread() or \
            not hasattr(signal, 'pthread_sigmask'):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _temp_prefix(path: str) -> str:
    return f'.{os.path.basename(os.path.abspath(path))}.{os.getpid()}.'


@contextlib.contextmanager
def atomic_output(path: str, force: bool = False) -> Iterator[str]:
    """Yields a temporary file path beside ``path``; moves it onto ``path`` on success.

    Args:
        path: The file to write.
        force: Whether an existing ``path`` may be replaced.

    Yields:
        The temporary path to write (in the same folder, so the rename is atomic).

    Raises:
        The errors of :func:`check_destination`; :class:`Interrupted` on SIGTERM.
    """
    folder = check_destination(path, force, 'file')
    remove_stale_parts(path)
    with sigterm_raises():
        tmp = None
        try:
            with _signals_held():  # a Ctrl-C lands after the temporary is known, not before
                fd, tmp = tempfile.mkstemp(dir=folder, prefix=_temp_prefix(path), suffix='.part')
                os.close(fd)
            yield tmp
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, path)
        finally:
            if tmp is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(tmp)


@contextlib.contextmanager
def atomic_folder(path: str, force: bool = False) -> Iterator[str]:
    """Yields a temporary folder beside ``path``; moves it onto ``path`` on success.

    An existing ``path`` (with ``force``) is replaced only after the new folder
    is complete; it is moved aside first, so a failure never leaves neither.

    Args:
        path: The folder to write.
        force: Whether an existing ``path`` may be replaced.

    Yields:
        The temporary folder (``0755``) to fill.

    Raises:
        The errors of :func:`check_destination`; :class:`Interrupted` on SIGTERM.
    """
    folder = check_destination(path, force, 'folder')
    remove_stale_parts(path)
    with sigterm_raises():
        tmp = old = None
        try:
            with _signals_held():
                tmp = tempfile.mkdtemp(dir=folder, prefix=_temp_prefix(path), suffix='.part')
            os.chmod(tmp, FOLDER_MODE)
            yield tmp
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
        finally:
            for leftover in (tmp, old):
                if leftover and os.path.isdir(leftover):
                    shutil.rmtree(leftover, ignore_errors=True)
