"""Writing a user's output file whole or not at all, and never over a file by accident."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def atomic_output(path: str, force: bool = False) -> Iterator[str]:
    """Yields a temporary path beside ``path`` and moves it onto ``path`` on success.

    If the ``with`` block raises, the temporary file is removed and ``path`` is
    left as it was, so a failed run leaves no partial file.

    Args:
        path: The file to write.
        force: Whether an existing ``path`` may be replaced.

    Yields:
        The temporary path to write (same folder and extension as ``path``).

    Raises:
        FileExistsError: ``path`` exists and ``force`` is False.
        FileNotFoundError: The folder of ``path`` does not exist.
    """
    if os.path.exists(path) and not force:
        raise FileExistsError(f'{path} exists; pass --force to overwrite it')
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f'the folder of {path} does not exist: {folder}')
    base, ext = os.path.splitext(os.path.basename(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f'.{base}.', suffix=ext)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
