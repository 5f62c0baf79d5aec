"""Writing the converter's results, and the file hash recorded with them.

Reading a source checkpoint is :mod:`mmregnet.checkpoint.loading`'s.
"""
import hashlib
import os
from typing import Any

import torch

from ..checkpoint.errors import ConversionError
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


def save_checkpoint(obj: Any, dst: str, force: bool = False) -> None:
    """Writes ``obj`` with ``torch.save`` atomically (:func:`mmregnet.fileio.atomic_output`).

    An interrupted or failed write (an exception, Ctrl-C, SIGTERM) removes the
    temporary file, so ``dst`` is either the complete new file or untouched.

    Args:
        obj: What to save.
        dst: The output path (its folder must exist).
        force: Whether an existing ``dst`` may be replaced.

    Raises:
        ConversionError: The file cannot be written (the reason given).
    """
    try:
        with atomic_output(dst, force) as tmp:
            with open(tmp, 'wb') as f:
                torch.save(obj, f)
                f.flush()
                os.fsync(f.fileno())
    except OSError as e:  # a folder that refuses files, a full disk
        raise ConversionError(f'cannot write {dst!r}: {e.strerror or e}') from None
