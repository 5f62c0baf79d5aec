"""Loading a checkpoint file without running its code or trusting its sizes.

A ``.pth``/``.pyth`` file is a pickle, and a full unpickle can run arbitrary
code: checkpoints are read with ``torch.load(weights_only=True)`` under the
project's one allow-list (:mod:`mmregnet.compat`); a file that needs anything
else is refused with the names it asked for (:mod:`.pickles`), never run.
What is checked when:

- before ``torch.load``: a non-empty file of a known kind; a torch zip's
  members all pass their CRC-32 checks;
- by ``torch.load``: a zip's storages are memory-mapped, not copied; a legacy
  (pre-zip) file's storages are allocated at the sizes its pickle declares,
  so a forged size fails at that allocation or at the read after it;
- after ``torch.load``, before any tensor is used: each tensor fits in the
  storage it views (no stride-0 views that blow up when copied), all of them
  view at most :data:`VIEW_FACTOR` times the file, containers nest at most
  :data:`MAX_NESTING` deep; :mod:`.shapes` then checks shapes against a RegNet.

safetensors files hold no code (:mod:`.safetensors_file`).
"""
import os
import pickle
import warnings
import zipfile
from typing import Any, Iterator, Optional

import torch

from ..compat import allow_mmengine_checkpoints
from .errors import ConversionError
from .pickles import refusal_message, torch_reason, unsafe_globals
from .safetensors_file import load_safetensors

_ZIP_MAGIC = b'PK\x03\x04'
_PICKLE_PROTO = 0x80
_SLACK = 1 << 20
#: The tensors of a checkpoint may view at most this many times the file's bytes (tied weights).
VIEW_FACTOR = 2
#: Containers deeper than this are refused (a checkpoint nests a few levels).
MAX_NESTING = 64


def check_source_file(path: str) -> int:
    """Checks that ``path`` is a non-empty regular file.

    Args:
        path: The source checkpoint.

    Returns:
        The file's size in bytes.

    Raises:
        ConversionError: A missing path, a directory, or an empty file.
    """
    if not os.path.exists(path):
        raise ConversionError(f'source checkpoint {path!r} does not exist')
    if os.path.isdir(path):
        raise ConversionError(f'source {path!r} is a directory; expected a checkpoint file')
    size = os.path.getsize(path)
    if size == 0:
        raise ConversionError(f'source checkpoint {path!r} is empty (0 bytes)')
    return size


def sniff_format(path: str) -> str:
    """Tells a torch zip file, a raw pickle and a safetensors file apart by their first bytes.

    Args:
        path: A non-empty file.

    Returns:
        ``'zip'``, ``'pickle'`` or ``'safetensors'``.

    Raises:
        ConversionError: A text file or unrecognized bytes.
    """
    with open(path, 'rb') as f:
        head = f.read(64)
    size = os.path.getsize(path)
    if head.startswith(_ZIP_MAGIC):
        return 'zip'
    if head[0] == _PICKLE_PROTO:
        return 'pickle'
    if len(head) > 8 and head[8:9] == b'{' and 0 < int.from_bytes(head[:8], 'little') <= size - 8:
        return 'safetensors'
    try:
        text = head.decode('utf-8')
    except UnicodeDecodeError:
        text = None
    if text is not None and text.strip() and all(c.isprintable() or c.isspace() for c in text):
        raise ConversionError(f'{path!r} is a text file (starts with {text[:24]!r}), '
                              'not a PyTorch checkpoint')
    raise ConversionError(f'{path!r} is not a PyTorch or safetensors checkpoint '
                          f'(unrecognized leading bytes {head[:8].hex()})')


def zip_problem(path: str) -> Optional[str]:
    """Why a torch zip file is damaged (cut, or a member failing its CRC-32), or None if whole.

    Args:
        path: The file.

    Returns:
        The reason (``truncated or not a zip (...)`` or the failing member), or None.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError,
            NotImplementedError, RuntimeError) as e:
        return f'truncated or not a zip ({e})'
    return None if bad is None else f'the zip member {bad!r} fails its CRC-32 check'


def load_checkpoint(path: str) -> Any:
    """Loads a checkpoint without executing anything from it or trusting its sizes.

    Args:
        path: A ``torch.save`` file (zip or legacy) or a safetensors file.

    Returns:
        The unpickled object (tensors, plain containers and mmengine's
        training-log objects), or the safetensors file's ``{name: tensor}`` dict.

    Raises:
        ConversionError: Missing, empty, text, truncated or corrupt files,
            pickles that need code to load, and tensors larger than their data.
    """
    size = check_source_file(path)
    kind = sniff_format(path)
    if kind == 'safetensors':
        return load_safetensors(path)
    problem = zip_problem(path) if kind == 'zip' else None
    if problem:
        raise ConversionError(f'cannot read {path!r}: truncated or corrupt checkpoint: {problem}')
    with allow_mmengine_checkpoints(), warnings.catch_warnings():
        # torch warns about odd pickle protocols on the way to refusing them: one line is ours.
        warnings.simplefilter('ignore', UserWarning)
        try:
            ckpt = torch.load(path, map_location='cpu', weights_only=True, mmap=kind == 'zip')
        except pickle.UnpicklingError as e:
            refusal = refusal_message(path, unsafe_globals(path, kind == 'zip'))
            raise ConversionError(refusal or _corrupt(path, e)) from None
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:  # noqa: BLE001 - any failure to parse is a corrupt file
            raise ConversionError(_corrupt(path, e)) from None
    check_tensor_sizes(ckpt, path, size)
    return ckpt


def _corrupt(path: str, error: BaseException) -> str:
    return f'cannot read {path!r}: truncated or corrupt checkpoint ({torch_reason(error)})'


def _tensors(obj: Any) -> Iterator[tuple]:
    """``(where, tensor)`` for every tensor in nested dicts, lists and tuples, each object once."""
    seen, stack = set(), [('', obj, 0)]
    while stack:
        where, value, depth = stack.pop()
        if isinstance(value, torch.Tensor):
            yield where or '<top>', value
            continue
        if not isinstance(value, (dict, list, tuple)) or id(value) in seen:
            continue
        if depth >= MAX_NESTING:
            raise ConversionError(f'the checkpoint nests containers over {MAX_NESTING} deep '
                                  f'(at {where[:40]!r}...); no checkpoint does')
        seen.add(id(value))
        items = value.items() if isinstance(value, dict) else enumerate(value)
        stack += [(f'{where}.{k}' if where else str(k), v, depth + 1) for k, v in items]


def check_tensor_sizes(obj: Any, path: str, file_size: int) -> None:
    """Refuses tensors that claim more elements than their data holds.

    A tensor may view its storage with any strides, so a file of a few bytes
    can declare a ``(1 << 20, 1 << 20)`` tensor with strides ``(0, 0)``:
    harmless until something copies it (4 TB). Each tensor must fit in its
    storage, and all of them together in ``VIEW_FACTOR`` times the file.

    Args:
        obj: The loaded checkpoint.
        path: Its file, for messages.
        file_size: Its size in bytes.

    Raises:
        ConversionError: A tensor larger than its storage, or too many views.
    """
    total = 0
    for where, t in _tensors(obj):
        nbytes = t.numel() * t.element_size()
        storage = t.untyped_storage().nbytes() if t.layout == torch.strided else 0
        if nbytes > storage:
            raise ConversionError(
                f'cannot read {path!r}: tensor {where!r} claims {tuple(t.shape)} elements '
                f'(strides {t.stride()}) over only {storage} bytes of data; a checkpoint '
                'tensor never repeats its memory')
        total += nbytes
    if total > VIEW_FACTOR * file_size + _SLACK:
        raise ConversionError(f'cannot read {path!r}: its tensors view {total} bytes, over '
                              f'{VIEW_FACTOR} times the file\'s {file_size}; a checkpoint does '
                              'not repeat its data')
