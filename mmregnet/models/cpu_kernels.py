"""Fused oneDNN kernels for a deployed RegNet's inference on the CPU.

Once its BatchNorms are folded (:func:`~mmregnet.models.deploy.switch_to_deploy`),
every conv of a RegNet is followed by a ReLU, by nothing (the projection
shortcut) or by the residual add and a ReLU. oneDNN runs each as a single
primitive with the ReLU or the add as a post-op, on weights reordered once
into the blocked layout the primitive wants.

Two backends make those calls:

- **oneDNN's primitives, called directly** (:mod:`~mmregnet.models.onednn`,
  the default where the pinned ``onednn-cpu-gomp`` wheel is installed): a
  primitive per conv and input shape, about 4 µs of overhead per call, and
  every activation written straight into a buffer kept from one call to the
  next. On regnetx_400mf it was 1.09x-1.24x faster than PyTorch's op on
  8x3x224x224 and 1x64x400x400, and 2.1x on 2x3x64x64.
- **PyTorch's fused op** (``torch.ops.mkldnn._convolution_pointwise``, the
  calls inductor emits for a frozen model), elsewhere. It costs about 40 µs
  per call and writes into a given tensor only by adding to it, so only
  activations of :data:`MIN_BUFFER_BYTES` or more are kept (zeroed before
  each call); smaller ones are allocated per call.

Kept buffers matter: a fresh tensor of tens of MB costs a page fault per
4 KiB on first touch, a tenth of the forward on a 2-core machine. Each
stage's running output is updated in place; returned feature maps are always
fresh tensors.

Everything a call needs (each conv's packed weight or primitive, its
arguments, its output buffer) is bound once per input shape in a
:class:`Plan`, so a call runs the oneDNN ops with little Python between
them. Plans are per thread (they hold the buffers), the last
:data:`MAX_PLANS` input shapes of each; one is rebuilt when a weight changes
(``load_state_dict``, a new parameter).

The kernels run only where they apply (:func:`applies`): a float32 CPU
input, no autograd, not under tracing, scripting, ``torch.compile`` or ONNX
export, and a PyTorch built with oneDNN. Elsewhere the deployed model runs
its plain modules; all agree within float rounding (tested for every preset).
"""
import collections
import threading
import weakref
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from torch import Tensor

from .blocks import Bottleneck, SqueezeExcite
from .onednn import OneDnnCall, library
from .pytorch_op import TorchOpCall

# On PyTorch's op, below this size a freed tensor is mostly reused by the C
# allocator's heap, so a kept buffer would only add the cost of zeroing it.
MIN_BUFFER_BYTES = 8 << 20
# Input shapes whose plans (and their buffers) a thread keeps: a detector fed
# images of many sizes would otherwise keep buffers for every size it saw.
MAX_PLANS = 4


def available() -> bool:
    """Whether this PyTorch has the oneDNN fused-convolution ops."""
    return (torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, '_convolution_pointwise')
            and hasattr(torch.ops.mkldnn, '_convolution_pointwise_'))


def applies(x: Tensor) -> bool:
    """Whether a deployed RegNet may run its fused kernels on input ``x``.

    Args:
        x: The backbone's input.

    Returns:
        True for a float32 CPU tensor outside autograd, tracing, scripting,
        ``torch.compile`` and ONNX export, on a PyTorch with oneDNN.
    """
    return (x.device.type == 'cpu' and x.dtype == torch.float32 and not torch.is_grad_enabled()
            and not torch.jit.is_tracing() and not torch.jit.is_scripting()
            and not torch.compiler.is_compiling() and available())


def conv_output_shape(conv: nn.Conv2d, shape: Sequence[int]) -> Tuple[int, int, int, int]:
    """``(N, C, H, W)`` of ``conv`` applied to an input of ``shape``."""
    sizes = [(size + 2 * pad - dil * (k - 1) - 1) // stride + 1 for size, pad, dil, k, stride
             in zip(shape[2:], conv.padding, conv.dilation, conv.kernel_size, conv.stride)]
    return (shape[0], conv.out_channels, sizes[0], sizes[1])


# A conv bound to an input shape, on either backend (the same calls).
ConvCall = Union[OneDnnCall, TorchOpCall]


class BlockCalls(NamedTuple):
    """A :class:`Bottleneck`'s convs bound to its input shape."""
    conv1: ConvCall
    conv2: ConvCall
    shortcut: Optional[ConvCall]  # the projection, None for the identity
    conv3: ConvCall
    se: Optional[SqueezeExcite]
    keep: bool  # the output is returned, so it must be a fresh tensor


def _weight_state(convs: Sequence[nn.Conv2d]) -> Tuple[int, ...]:
    """Where each conv's weight and bias live and their versions: a change means repacking."""
    # The parameter dicts directly: nn.Module attribute lookup would triple the cost.
    return tuple(v for conv in convs for p in conv._parameters.values() if p is not None
                 for v in (p.data_ptr(), p._version))


class Plan:
    """A deployed RegNet's fused forward bound to one input shape, for one thread.

    Args:
        net: The deployed backbone.
        kernels: Its kernel state (packed weights, buffer policy).
        shape: The input's ``(N, C, H, W)``.
    """

    def __init__(self, net: nn.Module, kernels: 'Kernels', shape: Tuple[int, ...]) -> None:
        self.convs: List[nn.Conv2d] = []
        self._kernels, self._shape = kernels, shape
        self._stream = None
        if kernels.onednn is not None:
            self._stream = kernels.onednn.stream()
            weakref.finalize(self, kernels.onednn.destroy, 'stream', self._stream)
        self._buffers: Dict[Tuple[str, Tuple[int, ...]], Optional[Tensor]] = {}
        self.stem: Optional[ConvCall] = None
        if net.with_stem:
            self.stem, shape = self._bind(net.conv1, shape, 'stem')
        self.blocks: List[BlockCalls] = []
        for i, name in enumerate(net.res_layers):
            blocks = getattr(net, name)
            for j, block in enumerate(blocks):
                calls, shape = self._bind_block(block, shape,
                                                i in net.out_indices and j == len(blocks) - 1)
                self.blocks.append(calls)
        self.state = _weight_state(self.convs)

    def _bind(self, conv: nn.Conv2d, shape: Tuple[int, ...], role: str, relu: bool = True,
              kept: bool = True) -> Tuple[ConvCall, Tuple[int, ...]]:
        """``conv`` bound to input ``shape``, and its output's shape."""
        self.convs.append(conv)
        out_shape = conv_output_shape(conv, shape)
        lib = self._kernels.onednn
        # oneDNN's own primitives overwrite their output, so any buffer is worth keeping.
        out = self._buffer(role, out_shape, overwritten=lib is not None) if kept else None
        if lib is not None:
            return OneDnnCall(lib, conv, shape, out_shape, relu, out, self._stream), out_shape
        return TorchOpCall(conv, self._kernels.weight(conv, shape), relu, out), out_shape

    def _bind_block(self, block: Bottleneck, shape: Tuple[int, ...],
                    keep: bool) -> Tuple[BlockCalls, Tuple[int, ...]]:
        """``block``'s convs bound to input ``shape``, and its output's shape."""
        conv1, mid = self._bind(block.conv1, shape, 'conv1')
        conv2, mid = self._bind(block.conv2, mid, 'conv2')
        shortcut = (self._bind(block.downsample[0], shape, 'shortcut', relu=False)[0]
                    if block.downsample is not None else None)
        # conv3 adds into the shortcut, or into a fresh output when that is returned.
        conv3, out = self._bind(block.conv3, mid, 'conv3', kept=False)
        return BlockCalls(conv1, conv2, shortcut, conv3, block.se, keep), out

    def _buffer(self, role: str, shape: Tuple[int, ...],
                overwritten: bool = False) -> Optional[Tensor]:
        """The kept buffer for ``(role, shape)``, made on first use: a stage's blocks share it."""
        key = (role, shape)
        if key not in self._buffers:
            self._buffers[key] = self._kernels.new_buffer(shape, overwritten)
        return self._buffers[key]

    def run(self, x: Tensor) -> Tuple[Tensor, ...]:
        """The stage outputs for input ``x`` (of the plan's shape), channels-last, fresh."""
        if x.is_contiguous(memory_format=torch.channels_last):
            owned = False  # the caller's tensor: never written into
        else:
            x = self._buffer('input', self._shape, overwritten=True).copy_(x)
            owned = True
        if self.stem is not None:
            x, owned = self.stem(x), True
        outs = []
        for block in self.blocks:
            mid = block.conv2(block.conv1(x))
            if block.se is not None:
                mid = squeeze_excite_(block.se, mid)
            if block.shortcut is not None:
                x, owned = block.shortcut(x), True
            x = block.conv3.add_relu(mid, x, in_place=owned and not block.keep)
            owned = not block.keep
            if block.keep:
                outs.append(x)
        return tuple(outs)


class Kernels:
    """The fused path's state for one deployed model: packed weights and per-thread plans.

    Copying or pickling the model gives the copy an empty state, rebuilt on
    its first call.

    Args:
        min_buffer_bytes: On PyTorch's op, activations at least this large are
            written into kept buffers; smaller ones are allocated per call.
            oneDNN's own primitives keep them all.
        use_onednn: Whether to call oneDNN's primitives directly where the
            library is installed (:mod:`~mmregnet.models.onednn`), rather than
            through PyTorch's op.
    """

    def __init__(self, min_buffer_bytes: int = MIN_BUFFER_BYTES, use_onednn: bool = True) -> None:
        self.min_buffer_bytes, self.use_onednn = min_buffer_bytes, use_onednn
        self.onednn = library() if use_onednn else None
        self._packed: Dict[int, Tuple[int, int, Tensor]] = {}
        self._local = threading.local()

    def __deepcopy__(self, memo: Dict) -> 'Kernels':
        return Kernels(**self.__getstate__())

    def __getstate__(self) -> Dict:
        return dict(min_buffer_bytes=self.min_buffer_bytes, use_onednn=self.use_onednn)

    def __setstate__(self, state: Dict) -> None:
        self.__init__(**state)

    def weight(self, conv: nn.Conv2d, shape: Sequence[int]) -> Tensor:
        """``conv``'s weight in oneDNN's blocked layout, packed once per weight version.

        The layout is chosen for the first input shape; it stays right (if
        perhaps not the fastest) for other shapes, so a detector fed images of
        varying size does not repack for each.
        """
        key, version = id(conv), (conv.weight.data_ptr(), conv.weight._version)
        cached = self._packed.get(key)
        if cached is None or cached[:2] != version:
            packed = torch.ops.mkldnn._reorder_convolution_weight(
                conv.weight.detach(), list(conv.padding), list(conv.stride),
                list(conv.dilation), conv.groups, list(shape))
            cached = self._packed[key] = (*version, packed)
        return cached[2]

    def new_buffer(self, shape: Sequence[int], overwritten: bool = False) -> Optional[Tensor]:
        """A channels-last tensor of ``shape`` to keep, or None if it is small.

        On PyTorch's op a conv's buffer must be zeroed before each call (its
        in-place form adds into it), so only large ones pay. One that each
        call overwrites whole (the input's channels-last copy, any output of
        oneDNN's own primitives) is kept at any size: a fresh 4.8 MB copy of
        an 8x3x224x224 input cost 1.8 ms in page faults against 0.55 ms for
        copying into a kept one.
        """
        if not overwritten and 4 * torch.Size(shape).numel() < self.min_buffer_bytes:
            return None
        # A normal tensor even under inference_mode, so that later calls
        # outside it may still write into it.
        with torch.inference_mode(False):
            return torch.empty(shape, memory_format=torch.channels_last)

    def plan(self, net: nn.Module, shape: Tuple[int, ...]) -> Plan:
        """This thread's plan of ``net`` for input ``shape``, rebuilt if a weight changed."""
        plans = self._local.__dict__.setdefault('plans', collections.OrderedDict())
        plan = plans.get(shape)
        if plan is None or plan.state != _weight_state(plan.convs):
            plan = plans[shape] = Plan(net, self, shape)
            while len(plans) > MAX_PLANS:
                plans.popitem(last=False)
        plans.move_to_end(shape)
        return plan


def squeeze_excite_(se: SqueezeExcite, x: Tensor) -> Tensor:
    """Applies the SE gates to ``x`` in place."""
    s = se.fc2(torch.relu_(se.fc1(x.mean((2, 3), keepdim=True))))
    return x.mul_(torch.sigmoid_(s))


def regnet_forward(net: nn.Module, x: Tensor, kernels: Kernels) -> Tuple[Tensor, ...]:
    """A deployed :class:`~mmregnet.models.RegNet`'s forward on fused kernels.

    Args:
        net: The backbone after ``switch_to_deploy``, every norm an identity.
        x: ``(N, in_channels, H, W)`` float32 on the CPU, checked by the caller.
        kernels: The model's kernel state.

    Returns:
        The stage outputs of ``net.out_indices``, channels-last, fresh tensors.
    """
    return kernels.plan(net, tuple(x.shape)).run(x)


def foldable(net: nn.Module) -> bool:
    """Whether every norm of a deployed RegNet was folded (none is a GroupNorm...)."""
    norms = [net.norm1] if net.with_stem else []
    for block in net.modules():
        if isinstance(block, Bottleneck):
            norms += [getattr(block, n) for n in (block.norm1_name, block.norm2_name,
                                                  block.norm3_name)]
            if block.downsample is not None:
                norms.append(block.downsample[1])
    return all(isinstance(n, nn.Identity) for n in norms)
