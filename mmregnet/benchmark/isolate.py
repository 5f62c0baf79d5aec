"""Running one measurement in a fresh Python process.

Timings and peak memory depend on the process's history: glibc raises its
mmap threshold as large blocks are freed and then serves later tensors from
its heap without page faults, so a model timed after others runs faster than
in a fresh process, by up to a third here. A fresh process per measurement
makes every figure independent of what ran before it.
"""
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable

from ..processes import die_with_parent


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

    The child is killed if this process dies first (:func:`mmregnet.processes.die_with_parent`).
    """
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context('spawn'),
                             initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
        try:
            return pool.submit(fn, *args, **kwargs).result()
        except Exception as e:  # noqa: BLE001 - its error, or its death (BrokenProcessPool)
            raise RuntimeError(f'{fn.__qualname__} failed in its child process: '
                               f'{type(e).__name__}: {e}') from None
