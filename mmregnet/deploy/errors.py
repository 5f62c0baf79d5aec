"""The one exception type of deployment: bad input, said in one line."""
from ..errors import InputError


class DeployError(InputError):
    """Input that cannot be exported or run, with what was expected and what was given.

    An :class:`mmregnet.errors.InputError` (a ``ValueError``): the tools print
    it as one line and exit 1.
    """
