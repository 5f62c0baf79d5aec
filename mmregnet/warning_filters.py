"""The entry points' filter for third-party warnings a user can do nothing about.

Every tool under ``tools/`` and both command-line programs call
:func:`hide_third_party_warnings` first, before torch or the OpenMMLab stack is
imported, so that what they print is what they did. Only the warnings listed
in :data:`THIRD_PARTY_WARNINGS` are hidden, each named by category, message and
the module it is raised for; library code never filters warnings. ``--debug``
on the command line, or Python's own ``-W`` / ``PYTHONWARNINGS``, leaves every
warning shown.

Example:
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     hide_third_party_warnings(['--debug'])
    False
"""
import re
import sys
import warnings
from typing import NamedTuple, Optional, Sequence, Tuple, Type


class ThirdPartyWarning(NamedTuple):
    """One warning to hide: ``warnings.filterwarnings`` arguments, and why it is noise."""

    category: Type[Warning]
    message: str  # the start of the message, as printed
    module: str  # a regular expression for the module the warning is raised for
    why: str


THIRD_PARTY_WARNINGS: Tuple[ThirdPartyWarning, ...] = (
    # mmengine 0.10.7 imports pkg_resources and then reloads it (the reload is
    # attributed to importlib); the pinned stack needs setuptools < 82 for it.
    ThirdPartyWarning(UserWarning, 'pkg_resources is deprecated as an API',
                      r'(mmengine\.utils\.package_utils|importlib)$',
                      'mmengine imports pkg_resources'),
    ThirdPartyWarning(UserWarning, 'dir_offset and dir_limit_offset will be depressed',
                      r'mmdet3d\.models\.dense_heads\.anchor3d_head$',
                      "mmdet3d's Anchor3DHead, on every PointPillars config's settings"),
    ThirdPartyWarning(UserWarning, 'torch.meshgrid: in an upcoming release',
                      r'torch\.functional$', "mmdet3d's anchor generator calls torch.meshgrid"),
    ThirdPartyWarning(UserWarning, 'DeprecationWarning: pos_bboxes is deprecated',
                      r'mmdet\.models\.task_modules\.samplers\.sampling_result$',
                      "mmdet3d's heads read mmdet's SamplingResult.pos_bboxes"),
)


def hide_third_party_warnings(argv: Optional[Sequence[str]] = None) -> bool:
    """Hides :data:`THIRD_PARTY_WARNINGS` for the rest of the process, unless asked not to.

    Args:
        argv: The command line without the program name (default ``sys.argv[1:]``);
            ``--debug`` in it leaves every warning shown.

    Returns:
        Whether the filters were installed (not with ``--debug``, nor when Python
        was given warning options of its own).
    """
    argv = sys.argv[1:] if argv is None else argv
    if '--debug' in argv or sys.warnoptions:
        return False
    for noise in THIRD_PARTY_WARNINGS:
        warnings.filterwarnings('ignore', message=re.escape(noise.message),
                                category=noise.category, module=noise.module)
    return True
