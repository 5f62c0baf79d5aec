"""The one exception type for a checkpoint that cannot be read or converted."""
from ..errors import InputError


class ConversionError(InputError):
    """A checkpoint cannot be read or converted; the message says what was expected and given.

    The CLIs print it as one line (no traceback unless ``--debug``) and exit 1
    (:mod:`mmregnet.errors`).
    """
