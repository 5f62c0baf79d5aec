"""Why a write failed, in one line: :class:`WriteError` and the words for an ``OSError``.

Every writer of mmregnet goes through :mod:`mmregnet.fileio`, which turns an
error of the file system into a :class:`WriteError`: the destination, what was
being done, the cause in words and, when the cause is room, the bytes the
output needed and the bytes that were free. :func:`mmregnet.errors.run_guarded`
prints it as one line and exits 1.

Some writers hide the file system's error: torch's zip writer answers a full
disk with ``RuntimeError: [enforce fail at inline_container.cc:672] ...
unexpected pos``. :func:`write_failure` then looks for an ``OSError`` in the
exception's chain and, failing that, asks the file system itself by appending
a probe to the half-written temporary (:func:`probe_errno`): a disk that
just ran out of room refuses it with the real ``errno``.

Example:
    >>> print(WriteError('/d/e.pth', 'write', 28, needed=3000, free=1000))
    cannot write /d/e.pth: no space left on its file system (needs 3000 bytes; 1000 bytes were free)
"""
import errno
import os
import shutil
from typing import Callable, Iterator, Optional, Union

#: Causes that mean the destination's file system has no room for the output.
ROOM_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
#: Causes that come from the machine, never from a bug: a chain holding one is a fault.
FAULT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG})
#: Bytes appended to a temporary to learn why a writer that hides errors failed.
PROBE_BYTES = 1 << 16

_CAUSES = {
    errno.ENOSPC: 'no space left on its file system',
    errno.EDQUOT: 'the disk quota is exceeded',
    errno.EROFS: 'its file system is read-only',
    errno.EACCES: 'permission denied',
    errno.EPERM: 'the operation is not permitted',
    errno.EIO: 'an input/output error (the device failed)',
    errno.EFBIG: 'the file is too large for its file system',
    errno.ENOTDIR: 'a part of the path is not a folder',
    errno.EISDIR: 'a folder is in the way',
    errno.ENAMETOOLONG: 'the name is too long',
}
#: What :mod:`mmregnet.fileio` was doing: the words after the path in a message.
OPERATIONS = {
    'mkdir': ' (creating its folder)',
    'create': ' (creating its temporary file)',
    'write': '',
    'sync': ' (syncing it to disk)',
    'rename': ' (renaming the finished output into place)',
}
_MIB = 1 << 20


def _size(n: int) -> str:
    if n >= 1 << 30:
        return f'{n} bytes = {n / (1 << 30):.1f} GiB'
    return f'{n} bytes = {n / _MIB:.1f} MiB' if n >= _MIB else f'{n} bytes'


def cause_words(code: Optional[int], path: Optional[str] = None) -> str:
    """The cause of an ``OSError`` with ``errno`` ``code``, in words.

    Args:
        code: The ``errno``.
        path: The path written; names its folder when that is gone (``ENOENT``).

    Example:
        >>> cause_words(30)
        'its file system is read-only'
    """
    if code == errno.ENOENT and path:
        folder = os.path.dirname(os.path.abspath(path))
        if os.path.isdir(folder):
            return 'its temporary was removed while it was written'
        return f'its folder {folder} no longer exists'
    if code in _CAUSES:
        return _CAUSES[code]
    return os.strerror(code).lower() if code is not None else 'unknown error'


class WriteError(OSError):
    """An output could not be written; ``str()`` is the one line for the user.

    Attributes:
        path: The destination (not its temporary).
        operation: A key of :data:`OPERATIONS`.
        needed: Bytes the output takes, when known.
        free: Bytes the destination's file system had free (room errors only).
    """

    def __init__(self, path: str, operation: str, code: Optional[int],
                 needed: Optional[int] = None, free: Optional[int] = None) -> None:
        super().__init__(code, cause_words(code, path), path)
        self.path, self.operation, self.needed, self.free = path, operation, needed, free

    def __str__(self) -> str:
        line = f'cannot write {self.path}{OPERATIONS.get(self.operation, "")}: {self.strerror}'
        if self.errno not in ROOM_ERRNOS:
            return line
        if self.needed is not None and self.free is not None:
            return f'{line} (needs {_size(self.needed)}; {_size(self.free)} were free)'
        if self.needed is not None:
            return f'{line} (needs {_size(self.needed)})'
        if self.free is not None:
            return f'{line} (needs more than the {_size(self.free)} that were free)'
        return line

    def __reduce__(self):
        return type(self), (self.path, self.operation, self.errno, self.needed, self.free)


def chain(error: Optional[BaseException]) -> Iterator[BaseException]:
    """``error``, then the exception it was raised from or while handling, and so on."""
    seen = set()
    while error is not None and id(error) not in seen:
        yield error
        seen.add(id(error))
        error = error.__cause__ or error.__context__


def os_error_in(error: Optional[BaseException]) -> Optional[OSError]:
    """The first ``OSError`` with an ``errno`` in ``error``'s :func:`chain`."""
    return next((e for e in chain(error) if isinstance(e, OSError) and e.errno is not None),
                None)


def probe_errno(tmp: str) -> Optional[int]:
    """Whether the file system still takes bytes at ``tmp``: None if it does, else the errno.

    Appends :data:`PROBE_BYTES` zeros to the temporary ``tmp`` (creating it
    if needed) and syncs them. The caller removes ``tmp`` afterwards.
    """
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, bytes(PROBE_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        return e.errno
    return None


def allocated_bytes(path: Optional[str]) -> int:
    """The disk space a file, or a folder's files, take (0 when there is nothing)."""
    if path is None:
        return 0
    try:
        if not os.path.isdir(path):
            return os.lstat(path).st_blocks * 512
        return sum(os.lstat(os.path.join(root, name)).st_blocks * 512
                   for root, _, names in os.walk(path) for name in names)
    except (OSError, AttributeError):  # AttributeError: no st_blocks (Windows)
        return 0


def free_bytes(path: str) -> Optional[int]:
    """Bytes free for this user on the file system of ``path``'s folder (None if it is gone)."""
    try:
        return shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free
    except OSError:
        return None


#: Errors of a writer's own logic, passed on without asking the file system.
_LOGIC_ERRORS = (ValueError, LookupError, TypeError, AttributeError, AssertionError)

Needed = Union[int, Callable[[], int], None]


def _inside(name, tmp: str, path: str) -> bool:
    """Whether the file ``name`` is the output, its temporary or a file in the temporary folder."""
    if not isinstance(name, (str, bytes, os.PathLike)):
        return True  # a file descriptor: the writer's own
    name = os.path.abspath(os.fsdecode(name))
    tmp, path = os.path.abspath(tmp), os.path.abspath(path)
    return name in (tmp, path) or name.startswith(tmp + os.sep)


def write_failure(path: str, operation: str, error: BaseException, tmp: Optional[str] = None,
                  needed: Needed = None) -> Optional[WriteError]:
    """The :class:`WriteError` behind ``error``, or None when writing ``path`` did not cause it.

    Call it before removing the temporary: without an ``OSError`` in the
    chain, the file system is probed through ``tmp`` (:func:`probe_errno`; a
    file ``.probe`` inside a temporary folder). When room ran out, the bytes
    that were free for the write are those free now plus those the temporary
    holds (measured so, not after removing it: a writer may still hold it
    open). An ``OSError`` about another file (an input read while writing) is
    not a failure to write ``path``.

    Args:
        path: The destination.
        operation: A key of :data:`OPERATIONS`.
        error: What the writer raised.
        tmp: The temporary file or folder being written, if one was made.
        needed: The output's size in bytes, or a function computing it (called
            only when room ran out).

    Returns:
        The error to raise instead, or None.
    """
    found = os_error_in(error)
    if isinstance(found, WriteError) and found.path == path:
        return found
    if found is not None:
        names = [n for n in (found.filename, found.filename2) if n is not None]
        if tmp is not None and names and not any(_inside(n, tmp, path) for n in names):
            return None
        code = found.errno
    elif isinstance(error, _LOGIC_ERRORS) or tmp is None:
        return None
    else:
        code = probe_errno(os.path.join(tmp, '.probe') if os.path.isdir(tmp) else tmp)
        if code is None:
            return None
    size = free = None
    if code in ROOM_ERRNOS and needed is not None:
        size = needed() if callable(needed) else int(needed)
    if code == errno.ENOSPC:
        now = free_bytes(path)
        free = None if now is None else now + allocated_bytes(tmp)
    return WriteError(path, operation, code, needed=size, free=free)


def describe(error: OSError) -> str:
    """One line for an ``OSError``: a :class:`WriteError` as it is, else path and cause in words.

    Example:
        >>> describe(OSError(28, 'No space left on device', '/data/log.txt'))
        '/data/log.txt: no space left on its file system'
        >>> describe(FileNotFoundError('config file a.py does not exist'))
        'config file a.py does not exist'
    """
    if isinstance(error, WriteError) or error.errno is None:
        return str(error)
    words = cause_words(error.errno)  # without a path, ENOENT in the system's words
    names = [str(name) for name in (error.filename, error.filename2) if name is not None]
    return f'{" -> ".join(names)}: {words}' if names else words
