"""Choosing the checkpoint a killed run resumes from.

mmengine's CheckpointHook writes ``epoch_N.pth`` in place (not atomically),
deletes the oldest checkpoint *before* writing a new one when
``max_keep_ckpts`` is set, and then rewrites ``<work_dir>/last_checkpoint``.
A run killed at the wrong moment therefore leaves a truncated ``.pth``, a
``last_checkpoint`` naming a deleted file, or an empty ``last_checkpoint``;
mmengine's auto-resume then fails. :func:`find_resumable_checkpoint` picks
the newest checkpoint that is complete instead.

torch saves checkpoints as zip archives whose directory sits at the end of
the file and which store a CRC-32 per member, so a file is complete when it
opens as a zip and every member passes its CRC check.
"""
import os
import re
from typing import List, Optional, Tuple

from ..checkpoint.loading import zip_problem

_STEP = re.compile(r'^(epoch|iter)_(\d+)\.pth$')


def checkpoint_problem(path: str) -> Optional[str]:
    """Why ``path`` is not a fully written torch (zip-format) checkpoint, or None if it is.

    Args:
        path: A file path.

    Returns:
        None for a complete checkpoint; else the reason (missing, empty,
        truncated or corrupted), for the log.
    """
    if not os.path.isfile(path):
        return 'missing'
    if os.path.getsize(path) == 0:
        return 'empty (0 bytes)'
    return zip_problem(path)


def is_complete_checkpoint(path: str) -> bool:
    """Whether ``path`` is a fully written torch (zip-format) checkpoint.

    Args:
        path: A file path.

    Returns:
        False for a missing, empty, truncated or corrupted file.
    """
    return checkpoint_problem(path) is None


def checkpoint_candidates(work_dir: str) -> List[str]:
    """``epoch_N.pth`` / ``iter_N.pth`` files in ``work_dir``, newest step first."""
    if not os.path.isdir(work_dir):
        return []
    found = []
    for name in os.listdir(work_dir):
        match = _STEP.match(name)
        if match:
            found.append((int(match.group(2)), name))
    return [os.path.join(work_dir, name) for _, name in sorted(found, reverse=True)]


def read_last_checkpoint(work_dir: str) -> Optional[str]:
    """The path ``<work_dir>/last_checkpoint`` names, or None (absent or empty).

    A relative path is taken as written by a run started in the current
    directory; if it does not exist there, its file name is looked up in
    ``work_dir``.
    """
    record = os.path.join(work_dir, 'last_checkpoint')
    if not os.path.isfile(record):
        return None
    with open(record) as f:
        path = f.read().strip()
    if not path:
        return None
    if not os.path.isabs(path) and not os.path.exists(path):
        path = os.path.join(work_dir, os.path.basename(path))
    return path


def find_resumable_checkpoint(work_dir: str,
                              skipped: Optional[List[Tuple[str, str]]] = None) -> Optional[str]:
    """The newest complete checkpoint of a run, for ``--resume``.

    The complete ``epoch_N.pth`` / ``iter_N.pth`` with the highest N (a run
    killed between writing a checkpoint and updating ``last_checkpoint``
    resumes from the newer file); without one, the file ``last_checkpoint``
    names if it is complete (it may follow another ``filename_tmpl``).

    Args:
        work_dir: The run's work directory.
        skipped: If given, gets ``(path, reason)`` for each newer checkpoint
            passed over (for the log).

    Returns:
        The checkpoint path, or None when the run has no complete checkpoint.
    """
    skipped = [] if skipped is None else skipped
    for path in checkpoint_candidates(work_dir):
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        skipped.append((path, problem))
    last = read_last_checkpoint(work_dir)
    if last is None:
        return None
    problem = checkpoint_problem(last)
    if problem is not None and all(path != last for path, _ in skipped):
        skipped.append((last, f'{problem}; named by last_checkpoint'))
    return last if problem is None else None
