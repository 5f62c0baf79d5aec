"""Reading a safetensors file with every header entry checked before any data is read.

The format: an 8-byte little-endian header length, a JSON object mapping each
tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (plus an
optional ``"__metadata__"`` of strings), then the raw little-endian data.
Offsets count from the start of the data. Here every entry must name a known
dtype, a shape of at most :data:`MAX_DIMS` non-negative integers, and an
in-file byte range exactly as long as the shape needs; ranges may not
overlap. Only then is the data read, so a forged header cannot make the
reader allocate more than the file holds.
"""
import json
import os
from typing import Any, Dict, List, Tuple

import torch

from .errors import ConversionError

#: safetensors' own limit on the JSON header.
MAX_HEADER = 100 << 20
#: Most dimensions of a tensor (a conv weight has 4).
MAX_DIMS = 8
#: Largest single dimension (no weight tensor comes near).
MAX_DIM = 1 << 31

_NAMES = {
    'F64': 'float64', 'F32': 'float32', 'F16': 'float16', 'BF16': 'bfloat16',
    'F8_E4M3': 'float8_e4m3fn', 'F8_E5M2': 'float8_e5m2',
    'I64': 'int64', 'I32': 'int32', 'I16': 'int16', 'I8': 'int8',
    'U64': 'uint64', 'U32': 'uint32', 'U16': 'uint16', 'U8': 'uint8', 'BOOL': 'bool',
}
#: safetensors dtype names this torch can hold.
DTYPES: Dict[str, torch.dtype] = {k: getattr(torch, v) for k, v in _NAMES.items()
                                  if hasattr(torch, v)}


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _fail(path: str, what: str) -> ConversionError:
    return ConversionError(f'cannot read {path!r}: corrupt safetensors header ({what})')


Entry = Tuple[torch.dtype, List[int], int, int]


def _entry(path: str, name: str, info: Any, data_len: int) -> Entry:
    if not isinstance(info, dict):
        raise _fail(path, f'entry {name!r} is a {type(info).__name__}, not an object')
    missing = [k for k in ('dtype', 'shape', 'data_offsets') if k not in info]
    if missing:
        raise _fail(path, f'entry {name!r} lacks {", ".join(missing)}')
    dtype, shape, offsets = info['dtype'], info['shape'], info['data_offsets']
    if dtype not in DTYPES:
        raise ConversionError(f'cannot read {path!r}: tensor {name!r} has dtype {dtype!r}, '
                              f'which is not supported; supported: {", ".join(DTYPES)}')
    if not (isinstance(shape, list) and len(shape) <= MAX_DIMS
            and all(_is_int(n) and 0 <= n <= MAX_DIM for n in shape)):
        raise _fail(path, f'tensor {name!r} has shape {str(shape)[:80]}; expected at most '
                          f'{MAX_DIMS} integers in 0..{MAX_DIM}')
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_int, offsets))
            and 0 <= offsets[0] <= offsets[1] <= data_len):
        raise _fail(path, f'tensor {name!r} has data_offsets {str(offsets)[:80]}; expected '
                          f'[begin, end] with 0 <= begin <= end <= {data_len}, the data size')
    count = 1
    for n in shape:
        count *= n
    itemsize = torch.empty((), dtype=DTYPES[dtype]).element_size()
    if count * itemsize != offsets[1] - offsets[0]:
        raise _fail(path, f'tensor {name!r} ({dtype}, shape {shape}) needs '
                          f'{count * itemsize} bytes, its data_offsets {offsets} give '
                          f'{offsets[1] - offsets[0]}')
    return DTYPES[dtype], shape, offsets[0], offsets[1]


def read_header(path: str) -> Tuple[Dict[str, Entry], int, int]:
    """Reads and checks a safetensors header; reads no tensor data.

    Args:
        path: The file.

    Returns:
        ``{name: (dtype, shape, begin, end)}``, the data's start in the file
        and its length.

    Raises:
        ConversionError: A header that does not describe data in this file.
    """
    size = os.path.getsize(path)
    with open(path, 'rb') as f:
        header_len = int.from_bytes(f.read(8), 'little')
        if size < 8 or not 2 <= header_len <= min(size - 8, MAX_HEADER):
            raise _fail(path, f'header length {header_len} does not fit a file of {size} bytes')
        raw = f.read(header_len)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise _fail(path, f'not JSON: {str(e)[:120]}') from None
    if not isinstance(header, dict):
        raise _fail(path, f'a JSON {type(header).__name__}, expected an object')
    header.pop('__metadata__', None)
    data_len = size - 8 - header_len
    entries = {name: _entry(path, name, info, data_len) for name, info in header.items()}
    spans = sorted((begin, end, name) for name, (_, _, begin, end) in entries.items()
                   if end > begin)
    for (_, end, first), (begin, _, second) in zip(spans, spans[1:]):
        if begin < end:
            raise _fail(path, f'the data of {first!r} and {second!r} overlap')
    return entries, 8 + header_len, data_len


def load_safetensors(path: str) -> Dict[str, torch.Tensor]:
    """Parses a safetensors file after checking its header (see the module doc).

    Args:
        path: The file.

    Returns:
        ``{name: tensor}``; the tensors share one writable buffer of the data's size.

    Raises:
        ConversionError: A header or data range that does not fit the file.
    """
    entries, start, data_len = read_header(path)
    data = bytearray(data_len)
    with open(path, 'rb') as f:
        f.seek(start)
        if f.readinto(data) != data_len:
            raise ConversionError(f'cannot read {path!r}: the file changed while being read')
    out = {}
    for name, (dtype, shape, begin, end) in entries.items():
        count = (end - begin) // torch.empty((), dtype=dtype).element_size()
        flat = torch.frombuffer(data, dtype=dtype, count=count, offset=begin) if count else \
            torch.empty(0, dtype=dtype)
        out[name] = flat.reshape(shape)
    return out
