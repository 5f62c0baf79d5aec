"""Lets mmcv 2.1.0's source build against torch >= 2.14, whose headers need C++20.

mmcv 2.1.0's ``setup.py`` hard-codes ``-std=c++17`` for the C++ and nvcc compilers on
Linux; torch 2.14's headers use C++20 features, so the ops fail to compile. This
rewrites exactly those two flags and refuses any source that does not hold each
exactly once, so a different mmcv release is never patched blindly.

Usage: ``python tools/setup/patch_mmcv_cxx20.py MMCV_SOURCE_DIR``
"""
import sys
from pathlib import Path

#: (line as mmcv 2.1.0 ships it, line after the patch)
REPLACEMENTS = (
    ("extra_compile_args['cxx'] = ['-std=c++17']",
     "extra_compile_args['cxx'] = ['-std=c++20']"),
    ("extra_compile_args['nvcc'] += ['-std=c++17']",
     "extra_compile_args['nvcc'] += ['-std=c++20']"),
)


def patch_source(text: str) -> str:
    """Returns mmcv's ``setup.py`` text with both C++ standard flags set to C++20.

    Raises:
        ValueError: if a flag line is missing or occurs more than once.

    >>> patch_source("  extra_compile_args['cxx'] = ['-std=c++17']\\n"
    ...              "  extra_compile_args['nvcc'] += ['-std=c++17']\\n").count('c++20')
    2
    """
    for old, new in REPLACEMENTS:
        count = text.count(old)
        if count != 1:
            raise ValueError(f'mmcv setup.py: expected the line {old!r} exactly once, '
                             f'found it {count} times (is this mmcv 2.1.0?)')
        text = text.replace(old, new)
    return text


def main(argv=None) -> int:
    """Patches ``MMCV_SOURCE_DIR/setup.py`` in place; exit status 1 on a foreign source."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print('usage: patch_mmcv_cxx20.py MMCV_SOURCE_DIR', file=sys.stderr)
        return 2
    path = Path(args[0]) / 'setup.py'
    try:
        path.write_text(patch_source(path.read_text()))
    except (OSError, ValueError) as exc:
        print(f'patch_mmcv_cxx20: {exc}', file=sys.stderr)
        return 1
    print(f'patch_mmcv_cxx20: {path} now builds with -std=c++20')
    return 0


if __name__ == '__main__':
    sys.exit(main())
