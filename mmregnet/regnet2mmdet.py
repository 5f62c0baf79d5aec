"""The ``regnet2mmdet`` console script.

It is installed with every ``pip install mmregnet``, but converting needs torch,
mmengine and safetensors (the ``det``, ``3d`` or ``cls`` extra). Without them it says so in
one line (exit status 1) instead of a traceback; with them it is
:func:`mmregnet.convert.cli.main`.
"""
import importlib.util
import sys
from typing import List, Optional

_NEEDS = ('torch', 'mmengine', 'safetensors')


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the converter, or names the missing packages and the extras that bring them.

    Args:
        argv: Arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The converter's exit status; 1 where one of them is not installed.
    """
    missing = [name for name in _NEEDS if importlib.util.find_spec(name) is None]
    if missing:
        print(f'regnet2mmdet: error: converting checkpoints needs {", ".join(missing)}, '
              'which this environment lacks: pip install "mmregnet[det]" (or [3d], [cls])',
              file=sys.stderr)
        return 1
    from .convert.cli import main as convert  # lazy: torch, which a base install lacks
    return convert(argv)


if __name__ == '__main__':
    sys.exit(main())
