"""Signals that end a tool's work, and the interrupt behind an error.

SIGINT raises ``KeyboardInterrupt`` in Python; :func:`sigterm_raises` makes
SIGTERM raise :class:`Interrupted`, so the ``finally`` blocks that remove
temporaries (:mod:`mmregnet.fileio`) run on both. :func:`signals_held` holds
both back for a step that must not be cut in two.
"""
import contextlib
import signal
import threading
from typing import Iterator, Optional

from .faults import chain


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


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
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


def interruption(error: BaseException) -> Optional[BaseException]:
    """The ``KeyboardInterrupt`` or :class:`Interrupted` behind ``error``.

    Some libraries turn an interrupt into their own error on the way out (torch's
    zip writer raises ``RuntimeError`` when a Ctrl-C stops it); the interrupt then
    sits in the exception's context.

    Args:
        error: The exception caught.

    Returns:
        The interrupt, or None when ``error`` did not come from one.
    """
    return next((e for e in chain(error) if isinstance(e, (KeyboardInterrupt, Interrupted))),
                None)
