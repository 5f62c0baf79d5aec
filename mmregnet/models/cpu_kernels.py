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
2-core machine that was a tenth of the forward. The buffers are per thread,
so concurrent callers do not share them; returned feature maps are always
fresh tensors.

The kernels run only where they apply (:func:`applies`): a float32 CPU
input, no autograd, not under tracing, scripting, ``torch.compile`` or ONNX
export, and a PyTorch built with oneDNN. Elsewhere the deployed model runs
its plain modules; both agree within float rounding (tested for every preset).
"""
import threading
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from .blocks import Bottleneck, SqueezeExcite

# Below this size a freed tensor is reused by the C allocator's heap, so a kept
# buffer would only add the cost of zeroing it (chosen by benchmarks/run_benchmarks.py).
MIN_BUFFER_BYTES = 8 << 20


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


class Kernels:
    """The fused path's state for one deployed model: packed weights and buffers.

    Copying or pickling the model gives the copy an empty state, rebuilt on
    its first call. A weight changed in place (``load_state_dict``) is
    repacked, as its version counter moves.

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

    def weight(self, conv: nn.Conv2d, x: Tensor) -> Tensor:
        """``conv``'s weight in oneDNN's blocked layout, packed once per weight version.

        The layout is chosen for the first input's shape; it stays right (if
        perhaps not the fastest) for other shapes, so a detector fed images of
        varying size does not repack on every call.
        """
        key, version = id(conv), (conv.weight.data_ptr(), conv.weight._version)
        cached = self._packed.get(key)
        if cached is None or cached[:2] != version:
            packed = torch.ops.mkldnn._reorder_convolution_weight(
                conv.weight.detach(), list(conv.padding), list(conv.stride),
                list(conv.dilation), conv.groups, list(x.shape))
            cached = self._packed[key] = (*version, packed)
        return cached[2]

    def buffer(self, role: str, shape: Tuple[int, ...], zero: bool = True) -> Optional[Tensor]:
        """A channels-last buffer kept for ``(role, shape)``, or None if small.

        Zeroed unless ``zero`` is False: a conv writes into a buffer by adding
        its output to it, the only in-place form oneDNN's fused op has.
        """
        if 4 * torch.Size(shape).numel() < self.min_buffer_bytes:
            return None
        buffers = self._local.__dict__.setdefault('buffers', {})
        buf = buffers.get((role, shape))
        if buf is None:
            # A normal tensor even under inference_mode, so that later calls
            # outside it may still write into it.
            with torch.inference_mode(False):
                buf = torch.empty(shape, memory_format=torch.channels_last)
            buffers[(role, shape)] = buf
        return buf.zero_() if zero else buf

    def conv(self, conv: nn.Conv2d, x: Tensor, role: str, relu: bool = True) -> Tensor:
        """``relu(conv(x))`` (or ``conv(x)``), into a kept buffer when large."""
        weight, args = self.weight(conv, x), self._args(conv)
        buf = self.buffer(role, conv_output_shape(conv, x.shape))
        if buf is None:
            return torch.ops.mkldnn._convolution_pointwise(
                x, weight, conv.bias, *args, 'relu' if relu else 'none', [], '')
        return torch.ops.mkldnn._convolution_pointwise_.binary(
            buf, x, weight, conv.bias, *args, 'add', 1.0, 'relu' if relu else None, [], '')

    def conv_add_relu(self, conv: nn.Conv2d, x: Tensor, shortcut: Tensor,
                      in_place: bool) -> Tensor:
        """``relu(conv(x) + shortcut)``, written into ``shortcut`` if ``in_place``."""
        args = self._args(conv)
        if in_place:
            return torch.ops.mkldnn._convolution_pointwise_.binary(
                shortcut, x, self.weight(conv, x), conv.bias, *args, 'add', 1.0, 'relu', [], '')
        return torch.ops.mkldnn._convolution_pointwise.binary(
            x, shortcut, self.weight(conv, x), conv.bias, *args, 'add', 1.0, 'relu', [], '')

    def channels_last(self, x: Tensor) -> Tuple[Tensor, bool]:
        """``x`` in channels-last format, and whether the result is ours to overwrite."""
        if x.is_contiguous(memory_format=torch.channels_last):
            return x, False
        buf = self.buffer('input', tuple(x.shape), zero=False)  # overwritten whole
        if buf is None:
            return x.contiguous(memory_format=torch.channels_last), True
        return buf.copy_(x), True

    @staticmethod
    def _args(conv: nn.Conv2d) -> Tuple[List[int], List[int], List[int], int]:
        return list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups


def squeeze_excite_(se: SqueezeExcite, x: Tensor) -> Tensor:
    """Applies the SE gates to ``x`` in place."""
    s = se.fc2(torch.relu_(se.fc1(x.mean((2, 3), keepdim=True))))
    return x.mul_(torch.sigmoid_(s))


def bottleneck(kernels: Kernels, block: Bottleneck, x: Tensor, owned: bool,
               keep: bool) -> Tensor:
    """A folded :class:`Bottleneck` on fused kernels.

    Args:
        kernels: The model's kernel state.
        block: The block, its norms folded (identities).
        x: Its channels-last input.
        owned: Whether ``x`` may be overwritten (not the caller's input, not returned).
        keep: Whether the output is returned, hence must be a fresh tensor.

    Returns:
        The block's output, channels-last.
    """
    mid = kernels.conv(block.conv1, x, 'conv1')
    mid = kernels.conv(block.conv2, mid, 'conv2')
    if block.se is not None:
        mid = squeeze_excite_(block.se, mid)
    if block.downsample is not None:
        shortcut, owned = kernels.conv(block.downsample[0], x, 'shortcut', relu=False), True
    else:
        shortcut = x
    return kernels.conv_add_relu(block.conv3, mid, shortcut, in_place=owned and not keep)


def regnet_forward(net: nn.Module, x: Tensor, kernels: Kernels) -> Tuple[Tensor, ...]:
    """A deployed :class:`~mmregnet.models.RegNet`'s forward on fused kernels.

    Args:
        net: The backbone after ``switch_to_deploy``, every norm an identity.
        x: ``(N, in_channels, H, W)`` float32 on the CPU, checked by the caller.
        kernels: The model's kernel state.

    Returns:
        The stage outputs of ``net.out_indices``, channels-last, fresh tensors.
    """
    x, owned = kernels.channels_last(x)
    if net.with_stem:
        x, owned = kernels.conv(net.conv1, x, 'stem'), True
    outs = []
    for i, name in enumerate(net.res_layers):
        blocks = getattr(net, name)
        for j, block in enumerate(blocks):
            keep = i in net.out_indices and j == len(blocks) - 1
            x, owned = bottleneck(kernels, block, x, owned, keep), not keep
        if i in net.out_indices:
            outs.append(x)
    return tuple(outs)


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
