"""oneDNN's convolution primitives called directly, for the fused CPU path.

PyTorch's fused oneDNN op (``torch.ops.mkldnn._convolution_pointwise``) spends
about 40 µs of setup on every call, allocates its output, and writes into a
given tensor only by adding to it (so a kept buffer must be zeroed first).
Here each conv of a deployed RegNet is a oneDNN primitive created once per
input shape, with its ReLU, its in-place residual add (a sum post-op) or its
add into a fresh output (a binary post-op) fused, its weights reordered once
into the layout it wants, and a scratchpad of its own. A call binds the data
pointers and executes: about 4 µs of overhead, and every activation is
written straight into a kept buffer.

The library is oneDNN 3.2 from the ``onednn-cpu-gomp`` wheel (pinned in
``requirements.txt``), loaded with :mod:`ctypes`. It is built against GNU
OpenMP like PyTorch, and loaded after ``torch``, so the two share PyTorch's
``libgomp`` (one thread pool; ``torch.set_num_threads`` applies to both).
Where the library is missing, :func:`library` returns None and the fused path
uses PyTorch's op.
"""
import ctypes
import ctypes.util
import functools
import os
import sys
import warnings
import weakref
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor

LIBRARY = 'libdnnl.so.3'
# Values of oneDNN 3.2's C API (oneapi/dnnl/dnnl_types.h of the pinned wheel).
_ENGINE_CPU, _STREAM_IN_ORDER, _F32, _FORMAT_ANY = 1, 1, 3, 1
_FORWARD_INFERENCE, _CONVOLUTION_DIRECT, _ELTWISE_RELU, _BINARY_ADD = 96, 1, 32, 0x1fff0
_QUERY_IMPL_INFO, _QUERY_WEIGHTS_MD, _QUERY_SCRATCHPAD_MD = 8, 131, 136
_SCRATCHPAD_USER = 1
_ARG_SRC, _ARG_DST, _ARG_WEIGHTS, _ARG_BIAS, _ARG_SCRATCHPAD = 1, 17, 33, 41, 80
_ARG_POST_OP0_SRC1 = 32768 | 2  # DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1
_Dims = ctypes.c_int64 * 12
_Handle = ctypes.c_void_p

# The post-ops a conv of a deployed RegNet can end with.
POSTS = ('none', 'relu', 'sum_relu', 'add_relu')


class _ExecArg(ctypes.Structure):
    _fields_ = [('arg', ctypes.c_int), ('memory', _Handle)]


class OneDnnError(RuntimeError):
    """A oneDNN call returned an error status."""


class _Version(ctypes.Structure):
    _fields_ = [('major', ctypes.c_int), ('minor', ctypes.c_int), ('patch', ctypes.c_int),
                ('hash', ctypes.c_char_p), ('cpu_runtime', ctypes.c_uint),
                ('gpu_runtime', ctypes.c_uint)]


VERSION = (3, 2)  # the C API values above are this version's
_CPU_RUNTIME_OMP = 2  # DNNL_RUNTIME_OMP


class Library:
    """The oneDNN shared library with its CPU engine.

    Args:
        path: The shared library's path.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.dll = ctypes.CDLL(path)
        d = self.dll
        d.dnnl_version.restype = ctypes.POINTER(_Version)
        version = d.dnnl_version().contents
        if (version.major, version.minor) != VERSION or version.cpu_runtime != _CPU_RUNTIME_OMP:
            raise OSError(f'{path} is oneDNN {version.major}.{version.minor} with CPU runtime '
                          f'{version.cpu_runtime}; expected {VERSION[0]}.{VERSION[1]} on OpenMP '
                          f'({_CPU_RUNTIME_OMP})')
        d.dnnl_primitive_desc_query_md.restype = _Handle
        d.dnnl_primitive_desc_query_md.argtypes = [_Handle, ctypes.c_int, ctypes.c_int]
        d.dnnl_memory_desc_get_size.restype = ctypes.c_size_t
        d.dnnl_memory_desc_get_size.argtypes = [_Handle]
        d.dnnl_post_ops_append_sum.argtypes = [_Handle, ctypes.c_float, ctypes.c_int32,
                                               ctypes.c_int]
        d.dnnl_post_ops_append_eltwise.argtypes = [_Handle, ctypes.c_int, ctypes.c_float,
                                                   ctypes.c_float]
        d.dnnl_post_ops_append_binary.argtypes = [_Handle, ctypes.c_int, _Handle]
        d.dnnl_memory_create.argtypes = [ctypes.POINTER(_Handle), _Handle, _Handle, _Handle]
        d.dnnl_memory_set_data_handle.argtypes = [_Handle, _Handle]
        d.dnnl_primitive_execute.argtypes = [_Handle, _Handle, ctypes.c_int, ctypes.c_void_p]
        self.engine = self._create('dnnl_engine_create', _ENGINE_CPU, 0)

    def check(self, status: int, call: str) -> None:
        """Raises :class:`OneDnnError` unless ``status`` is ``dnnl_success``."""
        if status != 0:
            raise OneDnnError(f'{call} failed with oneDNN status {status} ({self.path})')

    def _create(self, call: str, *args) -> _Handle:
        """Calls a ``dnnl_*_create`` function and returns the handle it made."""
        handle = _Handle()
        self.check(getattr(self.dll, call)(ctypes.byref(handle), *args), call)
        return handle

    def memory_desc(self, shape: Sequence[int], strides: Optional[Sequence[int]]) -> _Handle:
        """A float32 memory descriptor with these strides, or of any layout if None."""
        if strides is None:
            return self._create('dnnl_memory_desc_create_with_tag', len(shape), _Dims(*shape),
                                _F32, _FORMAT_ANY)
        return self._create('dnnl_memory_desc_create_with_strides', len(shape), _Dims(*shape),
                            _F32, _Dims(*strides))

    def memory(self, desc: _Handle, data: Optional[Tensor] = None) -> _Handle:
        """A memory object over ``data`` (or over nothing yet)."""
        return self._create('dnnl_memory_create', desc, self.engine,
                            _Handle(data.data_ptr() if data is not None else None))

    def stream(self) -> _Handle:
        """A new in-order stream (a plan's own: streams are not shared between threads)."""
        return self._create('dnnl_stream_create', self.engine, _STREAM_IN_ORDER)

    def destroy(self, kind: str, handle: _Handle) -> None:
        """Frees a handle made by ``dnnl_<kind>_create``."""
        getattr(self.dll, f'dnnl_{kind}_destroy')(handle)


@functools.lru_cache(maxsize=None)
def library() -> Optional[Library]:
    """The oneDNN library of this environment, loaded once, or None if it is missing.

    A library that is found but cannot be used (another version, another
    threading runtime) is skipped with a warning.
    """
    candidates = [os.path.join(sys.prefix, 'lib', LIBRARY), ctypes.util.find_library('dnnl')]
    for path in candidates:
        if path and (os.path.isfile(path) or not os.path.isabs(path)):
            try:
                return Library(path)
            except (OSError, AttributeError) as error:  # not loadable, not oneDNN 3.x
                warnings.warn(f'mmregnet: not using oneDNN directly: {error}')
    return None


def channels_last_strides(shape: Sequence[int]) -> Tuple[int, int, int, int]:
    """The strides of a contiguous channels-last tensor of ``shape`` (N, C, H, W)."""
    _, c, h, w = shape
    return (h * w * c, 1, w * c, c)


class _Handles(list):
    """oneDNN handles to free together, newest first."""

    def add(self, kind: str, handle: _Handle) -> _Handle:
        """Records ``handle``, made by ``dnnl_<kind>_create``, and returns it."""
        self.append((kind, handle))
        return handle


def _release(lib: Library, handles: _Handles) -> None:
    for kind, handle in reversed(handles):
        lib.destroy(kind, handle)
    handles.clear()


class ConvPrimitive:
    """A folded conv and its post-op as a oneDNN primitive, for one input shape.

    Activations are channels-last float32 tensors. The post-op is one of
    :data:`POSTS`: nothing, a ReLU, ``relu(conv + dst)`` (the residual added in
    place into the output) or ``relu(conv + other)`` (added into a fresh output).

    Args:
        lib: The loaded library.
        conv: The conv, its norm folded into its weight and bias.
        in_shape: The input's ``(N, C, H, W)``.
        out_shape: The output's ``(N, C, H, W)``.
        post: The post-op.
    """

    def __init__(self, lib: Library, conv: nn.Conv2d, in_shape: Sequence[int],
                 out_shape: Sequence[int], post: str) -> None:
        if post not in POSTS:
            raise ValueError(f'post must be one of {POSTS}, got {post!r}')
        self.lib, self.post = lib, post
        handles = _Handles()
        self._finalizer = weakref.finalize(self, _release, lib, handles)
        keep = handles.add
        out_md = keep('memory_desc', lib.memory_desc(out_shape, channels_last_strides(out_shape)))
        in_md = keep('memory_desc', lib.memory_desc(in_shape, channels_last_strides(in_shape)))
        weight = conv.weight.detach().contiguous()
        groups = conv.groups
        w_shape = weight.shape if groups == 1 else (groups, weight.shape[0] // groups,
                                                    *weight.shape[1:])
        w_plain_md = keep('memory_desc', lib.memory_desc(w_shape, weight.view(w_shape).stride()))
        w_any_md = keep('memory_desc', lib.memory_desc(w_shape, None))
        bias = conv.bias.detach().contiguous() if conv.bias is not None else None
        bias_md = None if bias is None else keep('memory_desc', lib.memory_desc(bias.shape, (1,)))

        attr = keep('primitive_attr', lib._create('dnnl_primitive_attr_create'))
        ops = keep('post_ops', lib._create('dnnl_post_ops_create'))
        if post == 'sum_relu':
            lib.check(lib.dll.dnnl_post_ops_append_sum(ops, 1.0, 0, 0), 'dnnl_post_ops_append_sum')
        if post == 'add_relu':
            lib.check(lib.dll.dnnl_post_ops_append_binary(ops, _BINARY_ADD, out_md),
                      'dnnl_post_ops_append_binary')
        if post != 'none':
            lib.check(lib.dll.dnnl_post_ops_append_eltwise(ops, _ELTWISE_RELU, 0.0, 0.0),
                      'dnnl_post_ops_append_eltwise')
        lib.check(lib.dll.dnnl_primitive_attr_set_post_ops(attr, ops), 'set_post_ops')
        lib.check(lib.dll.dnnl_primitive_attr_set_scratchpad_mode(attr, _SCRATCHPAD_USER),
                  'set_scratchpad_mode')
        pads = _Dims(*conv.padding)
        desc = keep('primitive_desc', lib._create(
            'dnnl_convolution_forward_primitive_desc_create', lib.engine, _FORWARD_INFERENCE,
            _CONVOLUTION_DIRECT, in_md, w_any_md, bias_md, out_md, _Dims(*conv.stride),
            _Dims(*(d - 1 for d in conv.dilation)), pads, pads, attr))
        self.primitive = keep('primitive', lib._create('dnnl_primitive_create', desc))
        info = ctypes.c_char_p()
        lib.dll.dnnl_primitive_desc_query(desc, _QUERY_IMPL_INFO, 0, ctypes.byref(info))
        self.implementation = (info.value or b'').decode()

        w_md = _Handle(lib.dll.dnnl_primitive_desc_query_md(desc, _QUERY_WEIGHTS_MD, 0))
        self.weight = torch.empty(lib.dll.dnnl_memory_desc_get_size(w_md), dtype=torch.uint8)
        self._reorder(weight, w_plain_md, w_md)
        self.bias = bias  # the memory object below points into it
        pad_md = _Handle(lib.dll.dnnl_primitive_desc_query_md(desc, _QUERY_SCRATCHPAD_MD, 0))
        self.scratchpad = torch.empty(max(1, lib.dll.dnnl_memory_desc_get_size(pad_md)),
                                      dtype=torch.uint8)
        self._src = keep('memory', lib.memory(in_md))
        self._dst = keep('memory', lib.memory(out_md))
        args = [(_ARG_SRC, self._src), (_ARG_DST, self._dst),
                (_ARG_WEIGHTS, keep('memory', lib.memory(w_md, self.weight))),
                (_ARG_SCRATCHPAD, keep('memory', lib.memory(pad_md, self.scratchpad)))]
        if bias is not None:
            args.append((_ARG_BIAS, keep('memory', lib.memory(bias_md, bias))))
        self._other = None
        if post == 'add_relu':
            self._other = keep('memory', lib.memory(out_md))
            args.append((_ARG_POST_OP0_SRC1, self._other))
        self._args = (_ExecArg * len(args))(*(_ExecArg(a, m) for a, m in args))
        self._nargs = len(args)

    def _reorder(self, weight: Tensor, plain_md: _Handle, packed_md: _Handle) -> None:
        """Packs ``weight`` into ``self.weight`` in the primitive's layout."""
        lib, handles = self.lib, _Handles()
        try:
            desc = handles.add('primitive_desc', lib._create(
                'dnnl_reorder_primitive_desc_create', plain_md, lib.engine, packed_md,
                lib.engine, None))
            reorder = handles.add('primitive', lib._create('dnnl_primitive_create', desc))
            args = (_ExecArg * 2)(
                _ExecArg(_ARG_SRC, handles.add('memory', lib.memory(plain_md, weight))),
                _ExecArg(_ARG_DST, handles.add('memory', lib.memory(packed_md, self.weight))))
            stream = handles.add('stream', lib.stream())
            lib.check(lib.dll.dnnl_primitive_execute(reorder, stream, 2, args), 'weight reorder')
            lib.check(lib.dll.dnnl_stream_wait(stream), 'dnnl_stream_wait')
        finally:
            _release(lib, handles)

    def __call__(self, stream: _Handle, x: Tensor, out: Tensor,
                 other: Optional[Tensor] = None) -> Tensor:
        """Runs the conv on ``x`` into ``out`` (plus ``other`` for ``add_relu``)."""
        dll = self.lib.dll
        dll.dnnl_memory_set_data_handle(self._src, x.data_ptr())
        dll.dnnl_memory_set_data_handle(self._dst, out.data_ptr())
        if self._other is not None:
            dll.dnnl_memory_set_data_handle(self._other, other.data_ptr())
        status = dll.dnnl_primitive_execute(self.primitive, stream, self._nargs, self._args)
        if status != 0:  # tested first: the message is not built on every call
            self.lib.check(status, f'executing {self.implementation}')
        return out


class OneDnnCall:
    """A folded conv bound to an input shape on oneDNN primitives.

    The same calls as :class:`~mmregnet.models.pytorch_op.TorchOpCall`. Each
    post-op's primitive is made on first use (a conv3 only ever adds).

    Args:
        lib: The loaded library.
        conv: The conv (its norm folded into its weight and bias).
        in_shape: The input's ``(N, C, H, W)``.
        out_shape: The output's ``(N, C, H, W)``.
        relu: Whether a ReLU follows (a projection shortcut has none).
        out: A channels-last buffer to write into, or None for a fresh output per call.
        stream: The plan's stream.
    """
    __slots__ = ('out', '_lib', '_conv', '_shapes', '_relu', '_stream', '_primitives')

    def __init__(self, lib: Library, conv: nn.Conv2d, in_shape: Sequence[int],
                 out_shape: Sequence[int], relu: bool, out: Optional[Tensor],
                 stream: _Handle) -> None:
        self.out, self._lib, self._conv, self._relu = out, lib, conv, relu
        self._shapes, self._stream = (tuple(in_shape), tuple(out_shape)), stream
        self._primitives = {}

    def _primitive(self, post: str) -> ConvPrimitive:
        primitive = self._primitives.get(post)
        if primitive is None:
            primitive = self._primitives[post] = ConvPrimitive(self._lib, self._conv,
                                                               *self._shapes, post)
        return primitive

    def _fresh(self) -> Tensor:
        return torch.empty(self._shapes[1], memory_format=torch.channels_last)

    def __call__(self, x: Tensor) -> Tensor:
        """``relu(conv(x))`` (or ``conv(x)``), into the kept buffer if there is one."""
        out = self.out if self.out is not None else self._fresh()
        return self._primitive('relu' if self._relu else 'none')(self._stream, x, out)

    def add_relu(self, x: Tensor, shortcut: Tensor, in_place: bool) -> Tensor:
        """``relu(conv(x) + shortcut)``, written into ``shortcut`` if ``in_place``."""
        if in_place:
            return self._primitive('sum_relu')(self._stream, x, shortcut)
        return self._primitive('add_relu')(self._stream, x, self._fresh(), shortcut)
