"""Fused oneDNN kernels for a deployed RegNet's inference on the CPU.

Once its BatchNorms are folded (:func:`~mmregnet.models.deploy.switch_to_deploy`),
every conv of a RegNet is followed by a ReLU, by nothing (the projection
shortcut) or by the residual add and a ReLU. oneDNN runs each as a single
primitive with the ReLU or the add as a post-op, on weights reordered once
into the blocked layout the primitive wants. These are the calls PyTorch's
inductor itself emits for a frozen model (``torch.ops.mkldnn._convolution_pointwise``),
made here without a compiler.

On top of that, large activations are written into buffers kept from one
call to the next, and each stage's running output is updated in place. A
fresh tensor of tens of MB costs a page fault per 4 KiB on first touch; on a
2-core machine that was a tenth of the forward. Returned feature maps are
always fresh tensors.

Everything a call needs (each conv's packed weight, its arguments, its output
buffer) is bound once per input shape in a :class:`Plan`, so a call runs the
oneDNN ops with little Python between them: on regnetx_400mf that saved
1.7 ms per forward, a fifth of a 2x3x64x64 batch (less than the noise on
8x3x224x224). Plans are per thread (they hold the buffers), the last
:data:`MAX_PLANS` input shapes of each; one is rebuilt when a weight changes
(``load_state_dict``, a new parameter).

The kernels run only where they apply (:func:`applies`): a float32 CPU
input, no autograd, not under tracing, scripting, ``torch.compile`` or ONNX
export, and a PyTorch built with oneDNN. Elsewhere the deployed model runs
its plain modules; both agree within float rounding (tested for every preset).
"""
import collections
import threading
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from .blocks import Bottleneck, SqueezeExcite

# Below this size a freed tensor is reused by the C allocator's heap, so a kept
# buffer would only add the cost of zeroing it (chosen by benchmarks/run_benchmarks.py).
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


class ConvCall:
    """One folded conv bound to an input shape: packed weight, arguments, output buffer.

    Args:
        conv: The conv (its norm folded into its weight and bias).
        weight: ``conv``'s weight in oneDNN's blocked layout.
        relu: Whether a ReLU follows (a projection shortcut has none).
        out: A channels-last buffer of the output's shape to write into, or
            None for a fresh output per call.
    """
    __slots__ = ('weight', 'bias', 'args', 'relu', 'out', '_plain', '_binary', '_into')

    def __init__(self, conv: nn.Conv2d, weight: Tensor, relu: bool,
                 out: Optional[Tensor]) -> None:
        self.weight, self.bias, self.relu, self.out = weight, conv.bias, relu, out
        self.args = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
        self._plain = torch.ops.mkldnn._convolution_pointwise.default
        self._binary = torch.ops.mkldnn._convolution_pointwise.binary
        self._into = torch.ops.mkldnn._convolution_pointwise_.binary

    def __call__(self, x: Tensor) -> Tensor:
        """``relu(conv(x))`` (or ``conv(x)``), into the kept buffer if there is one."""
        if self.out is None:
            return self._plain(x, self.weight, self.bias, *self.args,
                               'relu' if self.relu else 'none', [], '')
        # Adding into a zeroed buffer is the only in-place form oneDNN's fused op has.
        return self._into(self.out.zero_(), x, self.weight, self.bias, *self.args, 'add', 1.0,
                          'relu' if self.relu else None, [], '')

    def add_relu(self, x: Tensor, shortcut: Tensor, in_place: bool) -> Tensor:
        """``relu(conv(x) + shortcut)``, written into ``shortcut`` if ``in_place``."""
        if in_place:
            return self._into(shortcut, x, self.weight, self.bias, *self.args, 'add', 1.0,
                              'relu', [], '')
        return self._binary(x, shortcut, self.weight, self.bias, *self.args, 'add', 1.0,
                            'relu', [], '')


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
        out = self._buffer(role, out_shape) if kept else None
        return ConvCall(conv, self._kernels.weight(conv, shape), relu, out), out_shape

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

    def _buffer(self, role: str, shape: Tuple[int, ...]) -> Optional[Tensor]:
        """The kept buffer for ``(role, shape)``, made on first use: a stage's blocks share it."""
        key = (role, shape)
        if key not in self._buffers:
            self._buffers[key] = self._kernels.new_buffer(shape)
        return self._buffers[key]

    def run(self, x: Tensor) -> Tuple[Tensor, ...]:
        """The stage outputs for input ``x`` (of the plan's shape), channels-last, fresh."""
        if x.is_contiguous(memory_format=torch.channels_last):
            owned = False  # the caller's tensor: never written into
        else:
            buf = self._buffer('input', self._shape)  # overwritten whole: not zeroed
            x = buf.copy_(x) if buf is not None else x.contiguous(memory_format=torch.channels_last)
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
        min_buffer_bytes: Activations at least this large are written into
            kept buffers; smaller ones are allocated per call.
    """

    def __init__(self, min_buffer_bytes: int = MIN_BUFFER_BYTES) -> None:
        self.min_buffer_bytes = min_buffer_bytes
        self._packed: Dict[int, Tuple[int, int, Tensor]] = {}
        self._local = threading.local()

    def __deepcopy__(self, memo: Dict) -> 'Kernels':
        return Kernels(self.min_buffer_bytes)

    def __getstate__(self) -> Dict:
        return dict(min_buffer_bytes=self.min_buffer_bytes)

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

    def new_buffer(self, shape: Sequence[int]) -> Optional[Tensor]:
        """A channels-last tensor of ``shape`` to keep, or None if it is small."""
        if 4 * torch.Size(shape).numel() < self.min_buffer_bytes:
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
