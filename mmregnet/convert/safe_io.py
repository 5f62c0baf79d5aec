"""Writing the converter's results, and the file hash recorded with them.

Reading a source checkpoint is :mod:`mmregnet.checkpoint.loading`'s.
"""
import hashlib
import os
from typing import Any

import torch

from ..checkpoint.errors import ConversionError
from ..faults import describe
from ..fileio import atomic_output, check_destination as check_output

_CHUNK = 1 << 20


def file_sha256(path: str) -> str:
    """Hashes a file in 1 MiB chunks (a large checkpoint is never held in memory for this).

    Args:
        path: The file.

    Returns:
        Its sha256 as 64 hex digits.
    """
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(_CHUNK), b''):
            digest.update(chunk)
    return digest.hexdigest()


def check_destination(src: str, dst: str, force: bool) -> None:
    """Refuses a destination that is the source, a directory, unwritable, or existing.

    Args:
        src: The source checkpoint.
        dst: The output path.
        force: Whether an existing ``dst`` may be replaced.

    Raises:
        ConversionError: The destination is not acceptable.
    """
    if os.path.realpath(src) == os.path.realpath(dst) or (
            os.path.exists(dst) and os.path.exists(src) and os.path.samefile(src, dst)):
        raise ConversionError(f'refusing to overwrite the source checkpoint {src!r}; '
                              'give another output path')
    try:
        check_output(dst, force, 'file')
    except OSError as e:
        raise ConversionError(str(e)) from None


class _ByteCounter:
    """A write-only file that keeps no bytes, only their count."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data) -> int:
        n = memoryview(data).nbytes
        self.size += n
        return n

    def flush(self) -> None:
        pass


def saved_size(obj: Any) -> int:
    """The bytes ``torch.save(obj, ...)`` writes, counted without storing them.

    Example:
        >>> saved_size({'w': torch.zeros(1000)}) > 4000
        True
    """
    counter = _ByteCounter()
    torch.save(obj, counter)
    return counter.size


def save_checkpoint(obj: Any, dst: str, force: bool = False) -> None:
    """Writes ``obj`` with ``torch.save`` atomically (:func:`mmregnet.fileio.atomic_output`).

    An interrupted or failed write (an exception, Ctrl-C, SIGTERM, a full
    disk) removes the temporary file, so ``dst`` is either the complete new
    file or untouched.

    Args:
        obj: What to save.
        dst: The output path (its folder must exist).
        force: Whether an existing ``dst`` may be replaced.

    Raises:
        ConversionError: The file cannot be written: the path, the cause and,
            when room ran out, the bytes needed and free
            (:class:`~mmregnet.faults.WriteError`).
    """
    try:
        with atomic_output(dst, force, needed=lambda: saved_size(obj)) as tmp:
            with open(tmp, 'wb') as f:
                torch.save(obj, f)
    except OSError as e:  # a folder that refuses files, a full disk
        raise ConversionError(describe(e)) from e
