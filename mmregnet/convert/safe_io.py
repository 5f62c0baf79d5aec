"""Reading checkpoints without running their code, and writing results atomically.

A ``.pth``/``.pyth`` file is a pickle, and a full unpickle can run arbitrary
code. Checkpoints are therefore read with ``torch.load(weights_only=True)``,
which builds only tensors and plain containers; a file that needs anything
else is refused with the names it asked for, never executed. safetensors files
(timm's hub format) hold no code at all and are parsed directly.
"""
import hashlib
import json
import os
import pickle
import tempfile
import zipfile
from typing import Any, Dict, List

import torch

from .errors import ConversionError

_ZIP_MAGIC = b'PK\x03\x04'
_PICKLE_PROTO = 0x80
_CHUNK = 1 << 20

#: What mmengine runner checkpoints need besides tensors: the training logs under
#: ``message_hub`` (mmengine's HistoryBuffer and the numpy arrays it holds). These
#: names are bound to an inert placeholder that ignores its arguments, so nothing
#: from the file runs and the logs are simply not restored; any other global is
#: refused.
INERT_GLOBALS = (
    'mmengine.logging.history_buffer.HistoryBuffer',
    'numpy.core.multiarray._reconstruct', 'numpy._core.multiarray._reconstruct',
    'numpy.core.multiarray.scalar', 'numpy._core.multiarray.scalar',
    'numpy.ndarray', 'numpy.dtype', 'builtins.getattr',
)

_SAFETENSORS_DTYPES = {
    'F64': torch.float64, 'F32': torch.float32, 'F16': torch.float16, 'BF16': torch.bfloat16,
    'I64': torch.int64, 'I32': torch.int32, 'I16': torch.int16, 'I8': torch.int8,
    'U8': torch.uint8, 'BOOL': torch.bool,
}


class _Inert:
    """Stands in for an allowlisted training-log object; takes and keeps nothing."""

    def __new__(cls, *args: Any, **kwargs: Any) -> '_Inert':
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


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
    """Loads a checkpoint without executing anything from it.

    Zip checkpoints are memory-mapped, so a large file costs about its size
    once, not twice.

    Args:
        path: A ``torch.save`` file (zip or legacy) or a safetensors file.

    Returns:
        The unpickled object (tensors and plain containers), or the
        safetensors file's ``{name: tensor}`` dict.

    Raises:
        ConversionError: Missing, empty, text, truncated or corrupt files, and
            pickles that need code to load.
    """
    check_source_file(path)
    kind = sniff_format(path)
    if kind == 'safetensors':
        return load_safetensors(path)
    inert = [(_Inert, name) for name in INERT_GLOBALS]
    try:
        with torch.serialization.safe_globals(inert):
            return torch.load(path, map_location='cpu', weights_only=True, mmap=kind == 'zip')
    except pickle.UnpicklingError as e:
        if _needs_code(str(e)):
            raise ConversionError(_refusal(path, str(e))) from None
        raise ConversionError(_corrupt(path, e)) from None
    except (EOFError, RuntimeError, ValueError, zipfile.BadZipFile, OSError) as e:
        raise ConversionError(_corrupt(path, e)) from None


def _needs_code(message: str) -> bool:
    return any(s in message for s in ('GLOBAL', 'unrecognized function', 'allowlisted'))


def _refusal(path: str, message: str) -> str:
    try:
        names: List[str] = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        names = [n for n in names if n not in INERT_GLOBALS]
    except Exception:  # a legacy file: the unpickler's message still names the global
        names = []
    what = ', '.join(names) if names else message.split('WeightsUnpickler error: ')[-1][:160]
    return (f'refusing to load {path!r}: its pickle needs {what}, which could run arbitrary '
            'code (only tensors and plain containers are loaded, weights_only=True); if you '
            'trust the file, re-save just its state dict with torch.save')


def _corrupt(path: str, error: BaseException) -> str:
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
    return f'cannot read {path!r}: truncated or corrupt checkpoint ({reason})'


def load_safetensors(path: str) -> Dict[str, torch.Tensor]:
    """Parses a safetensors file (8-byte header length, JSON header, raw little-endian data).

    Args:
        path: The file.

    Returns:
        ``{name: tensor}``; the tensors share one writable buffer.

    Raises:
        ConversionError: A header or data range that does not fit the file.
    """
    size = os.path.getsize(path)
    with open(path, 'rb') as f:
        header_len = int.from_bytes(f.read(8), 'little')
        try:
            header = json.loads(f.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConversionError(f'cannot read {path!r}: corrupt safetensors header '
                                  f'({e})') from None
        data = bytearray(size - 8 - header_len)
        f.readinto(data)
    header.pop('__metadata__', None)
    out = {}
    for name, info in header.items():
        begin, end = info['data_offsets']
        dtype = _SAFETENSORS_DTYPES.get(info['dtype'])
        count = 1
        for n in info['shape']:
            count *= n
        if dtype is None or end > len(data) or end - begin != count * dtype.itemsize:
            raise ConversionError(f'cannot read {path!r}: tensor {name!r} ({info["dtype"]}, '
                                  f'{info["shape"]}) does not fit the file (truncated?)')
        flat = torch.frombuffer(data, dtype=dtype, count=count, offset=begin) if count else \
            torch.empty(0, dtype=dtype)
        out[name] = flat.reshape(info['shape'])
    return out


def check_destination(src: str, dst: str, force: bool) -> None:
    """Refuses a destination that is the source, a directory, in a missing folder, or existing.

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
    if os.path.isdir(dst):
        raise ConversionError(f'output {dst!r} is a directory; expected a file path')
    parent = os.path.dirname(os.path.abspath(dst))
    if not os.path.isdir(parent):
        raise ConversionError(f'output folder {parent!r} does not exist')
    if os.path.exists(dst) and not force:
        raise ConversionError(f'output {dst!r} exists; pass --force to replace it')


def atomic_save(obj: Any, dst: str) -> None:
    """Writes ``obj`` with ``torch.save`` to a temporary file beside ``dst``, then renames it.

    An interrupted or failed write removes the temporary file, so ``dst`` is
    either the complete new file or untouched.

    Args:
        obj: What to save.
        dst: The output path (its folder must exist).
    """
    folder, name = os.path.split(os.path.abspath(dst))
    fd, tmp = tempfile.mkstemp(prefix=f'.{name}.', suffix='.part', dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the weights from other users
        os.replace(tmp, dst)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
