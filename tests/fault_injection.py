"""Runs a Python script with one write failing as a sick or full disk fails it (tests only).

    python tests/fault_injection.py --match REGEX --errno ENOSPC [--at write] [--after N] \
        SCRIPT [ARGS...]

Every file whose path matches ``REGEX`` (searched in the absolute path) is
sabotaged at one point:

- ``create``: opening it for writing (``open``/``os.open``) raises;
- ``write``: its writes through Python file objects succeed for the first
  ``N`` bytes (partially, as ``write(2)`` does at the edge of a full disk),
  then raise;
- ``sync``: ``os.fsync`` of it raises;
- ``rename``: ``os.replace``/``os.rename`` from or onto it raises.

The error is ``OSError(errno, strerror)`` as the kernel reports it. The
script then runs as ``__main__`` with ``sys.argv = [SCRIPT, ARGS...]``;
``SCRIPT`` may be ``module:NAME`` for ``python -m NAME``.
Patching happens only in this test process, for the test; nothing of it is
in mmregnet.
"""
import argparse
import builtins
import errno
import io
import os
import re
import runpy
import sys
from typing import Callable


class _FailingFile:
    """A file opened for writing whose bytes past ``limit`` fail with ``code``."""

    def __init__(self, file, limit: int, code: int) -> None:
        self._file, self._left, self._code = file, limit, code

    def write(self, data):
        view = memoryview(data).cast('B') if not isinstance(data, str) else data
        if len(view) <= self._left:
            self._left -= len(view)
            return self._file.write(data)
        if self._left > 0:  # what still fits goes in, as write(2) does before ENOSPC
            self._file.write(view[:self._left])
            self._file.flush()
            self._left = 0
        raise OSError(self._code, os.strerror(self._code))

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()
        return False

    def __iter__(self):
        return iter(self._file)


def install(pattern: str, code: int, at: str, after: int) -> Callable[[], None]:
    """Patches this process's file functions as the module doc says; returns the undo."""
    match = re.compile(pattern)

    def hit(path) -> bool:
        try:
            return bool(match.search(os.path.abspath(os.fsdecode(path))))
        except TypeError:  # a file descriptor
            return False

    def fail(path=None):
        raise OSError(code, os.strerror(code), *([os.fspath(path)] if path else []))

    real_open, real_os_open = io.open, os.open
    real_fsync, real_replace, real_rename = os.fsync, os.replace, os.rename

    def writing(mode) -> bool:
        return any(c in mode for c in 'wax+')

    def patched_open(file, mode='r', *args, **kwargs):
        if isinstance(file, int) or not writing(mode) or not hit(file):
            return real_open(file, mode, *args, **kwargs)
        if at == 'create':
            fail(file)
        opened = real_open(file, mode, *args, **kwargs)
        return _FailingFile(opened, after, code) if at == 'write' else opened

    def patched_os_open(path, flags, *args, **kwargs):
        if at == 'create' and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and hit(path):
            fail(path)
        return real_os_open(path, flags, *args, **kwargs)

    def patched_fsync(fd):
        if at == 'sync' and hit(os.readlink(f'/proc/self/fd/{fd}')):
            fail()
        return real_fsync(fd)

    def renaming(real):
        def patched(src, dst, *args, **kwargs):
            if at == 'rename' and (hit(src) or hit(dst)):
                fail(src)
            return real(src, dst, *args, **kwargs)
        return patched

    builtins.open = io.open = patched_open
    os.open, os.fsync = patched_os_open, patched_fsync
    os.replace, os.rename = renaming(real_replace), renaming(real_rename)

    def undo() -> None:
        builtins.open = io.open = real_open
        os.open, os.fsync, os.replace, os.rename = real_os_open, real_fsync, real_replace, \
            real_rename
    return undo


def main() -> None:
    """Parses the command line, installs the failure, runs the script."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--match', required=True, help='regex of the paths to fail')
    parser.add_argument('--errno', required=True, choices=sorted(errno.errorcode.values()))
    parser.add_argument('--at', choices=('create', 'write', 'sync', 'rename'), default='write')
    parser.add_argument('--after', type=int, default=0, help='bytes written before the failure')
    parser.add_argument('script')
    parser.add_argument('args', nargs=argparse.REMAINDER)
    args = parser.parse_args()
    install(args.match, getattr(errno, args.errno), args.at, args.after)
    if args.script.startswith('module:'):
        module = args.script[len('module:'):]
        sys.argv = [module, *args.args]
        runpy.run_module(module, run_name='__main__', alter_sys=True)
        return
    sys.argv = [args.script, *args.args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(args.script)))
    runpy.run_path(args.script, run_name='__main__')


if __name__ == '__main__':
    main()
