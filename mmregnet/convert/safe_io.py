"""Reading checkpoints without running their code or trusting their sizes, and writing results.

A ``.pth``/``.pyth`` file is a pickle, and a full unpickle can run arbitrary
code. Checkpoints are therefore read with ``torch.load(weights_only=True)``,
which builds only tensors and plain containers, plus what an mmengine runner
checkpoint needs: the project's one allow-list,
:func:`mmregnet.compat.allow_mmengine_checkpoints`. A file that needs
anything else is refused with the names it asked for, never executed.

Nothing a file declares is allocated before it is checked against the file:
a torch zip's members must pass their CRC-32 checks, every tensor must fit in
the storage it views (no stride-0 tricks that would blow up when copied), and
the tensors together may not exceed twice the file's size. safetensors files
(timm's hub format) hold no code; their JSON header is validated entry by
entry (dtype, shape, offsets inside the file, no overlaps) before any data is
read (:mod:`mmregnet.convert.safetensors_file`).
"""
import hashlib
import os
import pickle
import warnings
import zipfile
from typing import Any, Iterator

import torch

from ..faults import describe
from ..fileio import atomic_output, check_destination as check_output
from .errors import ConversionError
from .pickles import refusal_message, unsafe_globals
from .safetensors_file import load_safetensors

_ZIP_MAGIC = b'PK\x03\x04'
_PICKLE_PROTO = 0x80
_CHUNK = 1 << 20
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


def file_sha256(path: str) -> str:
    """Hashes a file in 1 MiB chunks (a large checkpoint is never held in memory for this).

    Args:
        path: The file.

    Returns:
        Its sha256 as 64 hex digits.
    """
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(_CHUNK), b''):
            digest.update(chunk)
    return digest.hexdigest()


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


def load_checkpoint(path: str) -> Any:
    """Loads a checkpoint without executing anything from it or trusting its sizes.

    Zip checkpoints are memory-mapped, so a large file costs about its size
    once, not twice.

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
    if kind == 'zip':
        _check_zip(path)
    from ..compat import allow_mmengine_checkpoints  # mmengine only when a pickle is read
    with allow_mmengine_checkpoints(), warnings.catch_warnings():
        # torch warns about odd pickle protocols on the way to refusing them: one line is ours.
        warnings.simplefilter('ignore', UserWarning)
        try:
            ckpt = torch.load(path, map_location='cpu', weights_only=True, mmap=kind == 'zip')
        except pickle.UnpicklingError as e:
            refusal = refusal_message(path, str(e), unsafe_globals(path, kind == 'zip'))
            raise ConversionError(refusal or _corrupt(path, e)) from None
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:  # noqa: BLE001 - any failure to parse is a corrupt file
            raise ConversionError(_corrupt(path, e)) from None
    check_tensor_sizes(ckpt, path, size)
    return ckpt


def _check_zip(path: str) -> None:
    """Refuses a zip whose members do not all pass their CRC-32 check (flipped or cut bytes)."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError,
            NotImplementedError, RuntimeError) as e:
        raise ConversionError(_corrupt(path, e)) from None
    if bad is not None:
        raise ConversionError(f'cannot read {path!r}: corrupt checkpoint (the zip member '
                              f'{bad!r} fails its CRC-32 check)')


def _corrupt(path: str, error: BaseException) -> str:
    text = str(error)
    if 'WeightsUnpickler error:' in text:  # keep the reason, drop torch's advice around it
        text = text.split('WeightsUnpickler error:', 1)[1].split('Check the documentation')[0]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    reason = (lines or [type(error).__name__])[0][:160]
    return f'cannot read {path!r}: truncated or corrupt checkpoint ({reason})'


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
    if total > VIEW_FACTOR * file_size + _CHUNK:
        raise ConversionError(f'cannot read {path!r}: its tensors view {total} bytes, over '
                              f'{VIEW_FACTOR} times the file\'s {file_size}; a checkpoint does '
                              'not repeat its data')


def check_destination(src: str, dst: str, force: bool) -> None:
    """Refuses a destination that is the source, a directory, unwritable, or existing.

    Args:
        src: The source checkpoint.
        dst: The output path.
        force: Whether an existing ``dst`` may be replaced.

    Raises:
        ConversionError: The destination is not acceptable.
    """
    if os.path.realpath(src) == os.path.realpath(dst) or (
            os.path.exists(dst) and os.path.exists(src) and os.path.samefile(src, dst)):
        raise ConversionError(f'refusing to overwrite the source checkpoint {src!r}; '
                              'give another output path')
    try:
        check_output(dst, force, 'file')
    except OSError as e:
        raise ConversionError(str(e)) from None


class _ByteCounter:
    """A write-only file that keeps no bytes, only their count."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data) -> int:
        n = memoryview(data).nbytes
        self.size += n
        return n

    def flush(self) -> None:
        pass


def saved_size(obj: Any) -> int:
    """The bytes ``torch.save(obj, ...)`` writes, counted without storing them.

    Example:
        >>> saved_size({'w': torch.zeros(1000)}) > 4000
        True
    """
    counter = _ByteCounter()
    torch.save(obj, counter)
    return counter.size


def save_checkpoint(obj: Any, dst: str, force: bool = False) -> None:
    """Writes ``obj`` with ``torch.save`` atomically (:func:`mmregnet.fileio.atomic_output`).

    An interrupted or failed write (an exception, Ctrl-C, SIGTERM, a full
    disk) removes the temporary file, so ``dst`` is either the complete new
    file or untouched.

    Args:
        obj: What to save.
        dst: The output path (its folder must exist).
        force: Whether an existing ``dst`` may be replaced.

    Raises:
        ConversionError: The file cannot be written: the path, the cause and,
            when room ran out, the bytes needed and free
            (:class:`~mmregnet.faults.WriteError`).
    """
    try:
        with atomic_output(dst, force, needed=lambda: saved_size(obj)) as tmp:
            with open(tmp, 'wb') as f:
                torch.save(obj, f)
    except OSError as e:  # a folder that refuses files, a full disk
        raise ConversionError(describe(e)) from e
