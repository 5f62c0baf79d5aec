"""Reading a safetensors file (timm's hub format) with the ``safetensors`` package.

The package checks the header against the file (offsets inside the data, sizes
that match the shapes, no gaps or overlaps) before it memory-maps the data, but
its errors often name neither the tensor nor the value (``invalid shape, data
type, or offset for tensor``). :func:`read_header` therefore checks the header
first and names what is wrong: every entry must name a dtype this torch holds,
a shape of at most :data:`MAX_DIMS` integers in ``0..MAX_DIM``, and an in-file
byte range exactly as long as the shape needs, not overlapping another.
"""
import json
import math
import os
from typing import Any, Dict, Tuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..checks import is_int
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


def _fail(path: str, what: str) -> ConversionError:
    return ConversionError(f'cannot read {path!r}: corrupt safetensors header ({what})')


def _span(path: str, name: str, info: Any, data_len: int) -> Tuple[int, int]:
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
            and all(is_int(n) and 0 <= n <= MAX_DIM for n in shape)):
        raise _fail(path, f'tensor {name!r} has shape {str(shape)[:80]}; expected at most '
                          f'{MAX_DIMS} integers in 0..{MAX_DIM}')
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(is_int, offsets))
            and 0 <= offsets[0] <= offsets[1] <= data_len):
        raise _fail(path, f'tensor {name!r} has data_offsets {str(offsets)[:80]}; expected '
                          f'[begin, end] with 0 <= begin <= end <= {data_len}, the data size')
    nbytes = math.prod(shape) * DTYPES[dtype].itemsize
    if nbytes != offsets[1] - offsets[0]:
        raise _fail(path, f'tensor {name!r} ({dtype}, shape {shape}) needs {nbytes} bytes, '
                          f'its data_offsets {offsets} give {offsets[1] - offsets[0]}')
    return offsets[0], offsets[1]


def read_header(path: str) -> None:
    """Checks a safetensors header against the file (see the module doc); reads no tensor data.

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
    spans = sorted((*_span(path, name, info, data_len), name) for name, info in header.items())
    for (_, end, first), (begin, _, second) in zip(spans, spans[1:]):
        if begin < end:
            raise _fail(path, f'the data of {first!r} and {second!r} overlap')


def load_safetensors(path: str) -> Dict[str, torch.Tensor]:
    """``{name: tensor}`` of a safetensors file, memory-mapped, after checking its header.

    Raises:
        ConversionError: A header or data range that does not fit the file.
    """
    read_header(path)
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise _fail(path, str(e).strip().splitlines()[0][:160]) from None
