"""PyTorch's fused oneDNN op as a backend of the fused CPU path.

``torch.ops.mkldnn._convolution_pointwise`` (the call inductor emits for a
frozen model) runs a conv with its ReLU or residual add fused. It is used
where oneDNN's library cannot be called directly (:mod:`.onednn`).
"""
from typing import Optional

import torch
import torch.nn as nn
from torch import Tensor


class TorchOpCall:
    """A folded conv bound to an input shape on PyTorch's op: packed weight, arguments, buffer.

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
