"""Running one measurement in a fresh Python process.

Timings and peak memory depend on the process's history: glibc raises its
mmap threshold as large blocks are freed and then serves later tensors from
its heap without page faults, so a model timed after others runs faster than
in a fresh process, by up to a third here. A fresh process per measurement
makes every figure independent of what ran before it.
"""
import multiprocessing
import os
import threading
import time
from typing import Any, Callable


def _exit_with_parent(parent_pid: int, period: float = 0.5) -> None:
    """Ends this process once its parent is gone.

    A benchmark killed by a signal does not take its child along, and an
    orphan still racing models at full load would spoil every later timing.
    """
    while os.getppid() == parent_pid:
        time.sleep(period)
    os._exit(1)


def _target(conn, parent_pid: int, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    try:
        conn.send(('ok', fn(*args, **kwargs)))
    except Exception as e:  # report it in the parent rather than die silently
        conn.send(('error', f'{type(e).__name__}: {e}'))
    finally:
        conn.close()


def in_fresh_process(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, computed in a newly spawned Python process.

    Args:
        fn: A module-level function (the child imports it by name).
        *args: Its positional arguments, picklable.
        **kwargs: Its keyword arguments, picklable.

    Returns:
        Its (picklable) result.

    Raises:
        RuntimeError: If it raised in the child or the child died; the
            message names the function and the child's error.

    The child ends itself if this process is killed first.
    """
    ctx = multiprocessing.get_context('spawn')
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_target, args=(child, os.getpid(), fn, args, kwargs))
    proc.start()
    child.close()
    try:
        status, value = parent.recv()
    except EOFError:
        status, value = 'error', f'the child process died (exit code {proc.exitcode})'
    proc.join()
    if status != 'ok':
        raise RuntimeError(f'{fn.__qualname__} failed in its child process: {value}')
    return value
