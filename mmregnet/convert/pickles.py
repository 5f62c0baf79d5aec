"""What a checkpoint's pickle asks for, read without running it, and the refusal that names it.

torch's weights-only unpickler stops at the first global it does not allow;
the messages here name every one a torch zip file asks for (torch's own
static scan of ``data.pkl``) or, for raw and legacy pickles, those found by
disassembling the pickles with :mod:`pickletools`.
"""
import pickletools
import re
from typing import List, Optional

import torch

_REFUSAL_PATTERNS = (r'GLOBAL (\S+) was not an allowed global', r'unsupported GLOBAL (\S+)',
                     r'unrecognized function (.+?)(?: which belongs|$)', r'but got (<class [^>]+>)')


def unsafe_globals(path: str, is_zip: bool) -> List[str]:
    """The globals a checkpoint's pickle asks for that the allow-list in effect lacks.

    Args:
        path: The checkpoint.
        is_zip: Whether it is a torch zip file (else a raw or legacy pickle).

    Returns:
        ``module.name`` strings; empty when none can be found.
    """
    if is_zip:
        try:
            return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
        except Exception:  # noqa: BLE001 - a corrupt data.pkl: torch's message may name one
            return []
    try:  # torch's own table of what weights_only builds; the zip scan above uses it too
        from torch._weights_only_unpickler import _get_allowed_globals
        allowed = set(_get_allowed_globals())
    except ImportError:
        allowed = set()
    allowed |= {entry[1] if isinstance(entry, tuple) else
                f'{entry.__module__}.{entry.__qualname__}'
                for entry in torch.serialization.get_safe_globals()}
    return sorted(set(pickle_globals(path)) - allowed)


def pickle_globals(path: str, max_pickles: int = 8) -> List[str]:
    """Names of the globals (classes, functions) the pickles at the start of a file refer to.

    Read statically with :mod:`pickletools` (nothing is built or run); a legacy
    torch file is several pickles in a row, followed by raw tensor data.

    Args:
        path: The file.
        max_pickles: How many pickles in a row to read.

    Returns:
        ``module.name`` strings, in order of appearance.
    """
    names: List[str] = []
    with open(path, 'rb') as f:
        for _ in range(max_pickles):
            strings: List[str] = []
            try:
                for op, arg, _ in pickletools.genops(f):
                    if op.name in ('GLOBAL', 'INST'):
                        names.append(str(arg).replace(' ', '.'))
                    elif isinstance(arg, str) and 'UNICODE' in op.name:
                        strings.append(arg)
                    elif op.name == 'STACK_GLOBAL' and len(strings) >= 2:
                        names.append(f'{strings[-2]}.{strings[-1]}')
            except Exception:  # noqa: BLE001 - the end of the pickles, or damaged bytes
                break
    return names


def refusal_message(path: str, message: str, names: List[str]) -> Optional[str]:
    """The refusal of a pickle that needs code, naming what it asked for; None if ``message``
    (torch's UnpicklingError) is no refusal and ``names`` is empty (a corrupt pickle)."""
    found = [m.group(1) for p in _REFUSAL_PATTERNS for m in [re.search(p, message, re.M)] if m]
    if not found and not names:
        return None
    what = ', '.join(names) if names else found[0]
    return (f'refusing to load {path!r}: its pickle needs {what}, which could run arbitrary '
            'code (only tensors, plain containers and mmengine\'s training logs are loaded, '
            'weights_only=True); if you trust the file, re-save just its state dict with '
            'torch.save')
