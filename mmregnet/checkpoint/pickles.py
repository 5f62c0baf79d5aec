"""What a pickle asks for, read without running it; plain pickles read under the same policy.

torch's weights-only unpickler stops at the first global it does not allow;
the refusal here names every one a file asks for, as torch's own check
(``torch.serialization.get_unsafe_globals_in_checkpoint``) judges them. That
check and ``torch.load`` read only ``torch.save``'s zip files, and the check
only protocol-2 pickles, so a raw pickle goes to them as the ``data.pkl`` of an
in-memory torch zip (:func:`as_torch_zip`): for the check, a pickle of just the
globals :mod:`pickletools` finds in the file's pickles (a legacy torch file
holds several in a row); for loading an ``mmengine.dump`` ``.pkl``, the file.
"""
import io
import pickletools
import zipfile
from typing import Any, Callable, List, Optional, Sequence, Set, Tuple

import torch

from ..compat import allow_mmengine_checkpoints
from .errors import ConversionError

#: Most pickles read in a row from one file (a legacy torch file holds five).
MAX_PICKLES = 8


def as_torch_zip(data: bytes) -> io.BytesIO:
    """One pickle as the only pickle of an in-memory ``torch.save`` zip file."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w') as archive:
        archive.writestr('archive/data.pkl', data)
        archive.writestr('archive/version', '3\n')
    buffer.seek(0)
    return buffer


def pickle_globals(path: str) -> Set[Tuple[str, str]]:
    """``(module, name)`` of the globals the pickles at the start of a file refer to (any
    protocol), read statically: nothing is built or run."""
    names: Set[Tuple[str, str]] = set()
    with open(path, 'rb') as f:
        for _ in range(MAX_PICKLES):
            strings: List[str] = []
            try:
                for op, arg, _ in pickletools.genops(f):
                    if op.name in ('GLOBAL', 'INST'):
                        names.add(tuple(str(arg).split(' ', 1)))
                    elif isinstance(arg, str) and 'UNICODE' in op.name:
                        strings.append(arg)
                    elif op.name == 'STACK_GLOBAL' and len(strings) >= 2:
                        names.add((strings[-2], strings[-1]))
            except Exception:  # noqa: BLE001 - the end of the pickles, or damaged bytes
                break
    return names


def unsafe_globals(path: str, is_zip: bool) -> List[str]:
    """The globals a checkpoint's pickles ask for that the allow-list in effect lacks.

    Args:
        path: The checkpoint.
        is_zip: Whether it is a torch zip file (else a raw or legacy pickle).

    Returns:
        ``module.name`` strings; empty when none can be found.
    """
    try:
        if not is_zip:
            path = as_torch_zip(b''.join(f'c{module}\n{name}\n'.encode() for module, name
                                         in pickle_globals(path) if '\n' not in module + name)
                                + b'.')
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # noqa: BLE001 - a corrupt data.pkl: nothing to name
        return []


def torch_reason(error: BaseException) -> str:
    """The first line of why torch could not load a file. Its UnpicklingError has no field
    for the reason, which sits inside its advice text after ``WeightsUnpickler error:``."""
    text = str(error)
    if 'WeightsUnpickler error:' in text:
        text = text.split('WeightsUnpickler error:', 1)[1].split('Check the documentation')[0]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return (lines or [type(error).__name__])[0][:160]


def refusal_message(path: str, names: List[str]) -> Optional[str]:
    """The refusal of a pickle that needs code, naming what it asked for; None without names."""
    if not names:
        return None
    return (f'refusing to load {path!r}: its pickle needs {", ".join(names)}, which could run '
            'arbitrary code (only tensors, plain containers and mmengine\'s training logs are '
            'loaded, weights_only=True); if you trust the file, re-save just its state dict '
            'with torch.save')


def _storage_from_bytes(data: bytes) -> Any:
    """A tensor's storage in a plain pickle (legacy ``torch.save`` bytes), loaded weights-only."""
    return torch.load(io.BytesIO(data), weights_only=True)


def load_pickle(path: str, allow: Sequence[Callable] = ()) -> Any:
    """A plain pickle file (``mmengine.dump``'s protocol-2 ``.pkl``) read by torch's
    weights-only unpickler, with the project's allow-list and the classes in ``allow``.

    Raises:
        ConversionError: A file that is no such pickle, or that needs anything else.
    """
    with open(path, 'rb') as f:
        data = f.read()
    extra = [*allow, (_storage_from_bytes, 'torch.storage._load_from_bytes')]
    with allow_mmengine_checkpoints(), torch.serialization.safe_globals(extra):
        try:
            return torch.load(as_torch_zip(data), weights_only=True)
        except Exception as e:  # noqa: BLE001 - a refusal, or any failure to parse
            raise ConversionError(refusal_message(path, unsafe_globals(path, False))
                                  or f'cannot read {path!r}: {torch_reason(e)}') from None
