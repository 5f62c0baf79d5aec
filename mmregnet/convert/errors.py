"""The one exception type the converter raises for bad input."""
from ..errors import InputError


class ConversionError(InputError):
    """A checkpoint cannot be converted; the message says what was expected and what was given.

    The CLI prints it as one line (no traceback unless ``--debug``) and exits 1
    (:mod:`mmregnet.errors`).
    """
