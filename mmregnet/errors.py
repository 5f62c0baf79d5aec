"""The error contract of mmregnet's command-line tools.

- Bad input (a value that breaks a rule, a missing or unreadable file, an
  output that may not be written) ends with one ``PROG: error: ...`` line on
  stderr that names the input, the rule and the value, and exit status 1.
- An interrupt (Ctrl-C) ends with ``PROG: interrupted`` and 130; SIGTERM
  with 143 (128 + the signal), after the temporaries are removed.
- A failure of the machine while writing (no room, quota, a read-only file
  system, permission, a folder removed mid-run, an I/O error) is bad input
  too: one line naming the path, the operation and the cause, with the bytes
  needed and free where the cause is room (:mod:`mmregnet.faults`), exit 1,
  and nothing half-written left (:mod:`mmregnet.fileio`).
- Exit status 2 is left to argparse (usage) and to real bugs, which print
  ``unexpected ...`` and, with ``--debug``, the traceback.

Library code raises :class:`InputError` (a ``ValueError``) for bad input, so
callers that catch ``ValueError`` keep working.

Example:
    >>> def bad():
    ...     raise InputError('--n must be an integer in 1..100000, got 0')
    >>> run_guarded('mmregnet sample', bad)
    1
"""
import sys
import traceback
from typing import Callable, Optional, Tuple, Type

from .faults import FAULT_ERRNOS, WriteError, describe, os_error_in
from .interrupts import Interrupted, interruption, sigterm_raises

EXIT_BAD_INPUT = 1
EXIT_BUG = 2
EXIT_INTERRUPTED = 130


class InputError(ValueError):
    """A user's input breaks a rule; the message names the input, the rule and the value."""


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) made one space."""
    return ' '.join(str(text).split())


def fault(error: BaseException) -> Optional[OSError]:
    """The failure of the machine behind ``error``, or None for anything else.

    A :class:`~mmregnet.faults.WriteError`, or an ``OSError`` that no bug
    causes (no room, quota, read-only file system, I/O error) in the chain of
    an error a library raised instead (torch's zip writer answers a full disk
    with a ``RuntimeError``).
    """
    found = os_error_in(error)
    if isinstance(found, WriteError) or (found is not None and found.errno in FAULT_ERRNOS):
        return found
    return None


def message(error: BaseException) -> str:
    """The one line for a known error: an ``OSError``'s path and cause in words."""
    return one_line(describe(error) if isinstance(error, OSError) else error)


def run_guarded(prog: str, run: Callable[[], int], debug: bool = False,
                known: Tuple[Type[BaseException], ...] = (InputError, OSError)) -> int:
    """Runs a tool's body under the error contract; returns its exit status.

    SIGTERM raises inside the body (:func:`mmregnet.interrupts.sigterm_raises`),
    so its ``finally`` blocks remove temporaries as on Ctrl-C.

    Args:
        prog: The tool's name, the prefix of its messages.
        run: The body; returns the exit status of a success (usually 0).
        debug: Print tracebacks too.
        known: Exception types that mean bad input (exit 1); so does a
            failure of the machine (:func:`fault`); anything else is a bug
            (exit 2, ``unexpected ...``).

    Returns:
        ``run()``'s status, 1 for bad input, 130 (SIGINT) or 143 (SIGTERM)
        for an interrupt, 2 for a bug.
    """
    try:
        with sigterm_raises():
            return run()
    except BaseException as e:  # noqa: BLE001 - every ending gets a status and one line
        if isinstance(e, SystemExit):
            raise
        if debug:
            traceback.print_exc()
        stop = interruption(e)
        if stop is not None:
            print(f'{prog}: interrupted; nothing half-written was left', file=sys.stderr)
            return stop.exit_status if isinstance(stop, Interrupted) else EXIT_INTERRUPTED
        cause = e if isinstance(e, known) else fault(e)
        if cause is not None:
            print(f'{prog}: error: {message(cause)}', file=sys.stderr)
            return EXIT_BAD_INPUT
        hint = '' if debug else ' (rerun with --debug for the traceback)'
        print(f'{prog}: error: unexpected {type(e).__name__}: {one_line(e)}{hint}',
              file=sys.stderr)
        return EXIT_BUG
