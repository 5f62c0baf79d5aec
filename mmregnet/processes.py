"""Child processes that do not outlive the process that started them.

A benchmark or generator killed by a signal does not take its children along; an
orphan racing models or converting data would spoil later timings and keep writing.
``multiprocessing`` and ``subprocess`` have no such option: Linux's ``PR_SET_PDEATHSIG``.
"""
import ctypes
import os
import signal
from typing import Optional

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: Optional[int] = None) -> None:
    """Has the kernel kill this process (SIGKILL) when its parent dies.

    Call it first in a child, or as ``subprocess``'s ``preexec_fn``. Elsewhere than Linux
    it does nothing; the parent's own cleanup (on an exception or interrupt) still ends it.

    Args:
        parent_pid: The parent's process id, if known: a parent gone before
            the call ends this process at once.
    """
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)
