"""The source libraries' own networks, built to the observed structure, as references.

When pycls, timm or torchvision is importable, ``--verify`` builds that
library's RegNet (its own classes, on the meta device, so nothing is
allocated or initialised), assigns the *source* state dict to it strictly,
and compares its stage outputs with mmregnet's. pycls and torchvision take
the observed widths, depths and group widths directly; timm derives them
from the arch's numbers, so its network is checked against the weights'
shapes. A library that is missing, or that cannot express the weights (a
stem-less backbone, a stride other than 2, timm with other than four
stages), leaves the reason in the report instead of a comparison.
"""
from dataclasses import dataclass
from importlib import import_module, metadata
from types import ModuleType
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from ..arch import ArchSpec
from ..checkpoint.errors import ConversionError
from ..checkpoint.shapes import ObservedArch
from .layouts import Layout


@dataclass(frozen=True)
class Reference:
    """A source-library network cut into its stem and stages.

    Attributes:
        name: The library, with its version.
        net: The whole network (classifier included), for loading.
        stages: The stem, then each stage, applied in order.
    """

    name: str
    net: nn.Module
    stages: List[nn.Module]

    def eval(self) -> 'Reference':
        """Puts the network in eval mode and returns self."""
        self.net.eval()
        return self


class _CannotExpress(Exception):
    """The library's RegNet has no form for these weights (the message says why)."""


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:  # imported from a source tree
        return '(unknown version)'


def _pycls(lib: ModuleType, arch: ArchSpec, obs: ObservedArch, strides: Sequence[int],
           classes: int) -> Reference:
    n = len(obs.widths)
    net = lib.AnyNet(stem_type='simple_stem_in', stem_w=obs.stem_channels,
                     block_type='res_bottleneck_block', ds=list(obs.depths),
                     ws=list(obs.widths), ss=list(strides), bms=[arch.bot_mul] * n,
                     gws=list(obs.group_widths), se_r=arch.se_ratio, nc=classes)
    return Reference(f'pycls {_version("pycls")}', net,
                     [net.stem] + [getattr(net, f's{i}') for i in range(1, n + 1)])


def _timm(lib: ModuleType, arch: ArchSpec, obs: ObservedArch, strides: Sequence[int],
          classes: int) -> Reference:
    if len(obs.widths) != 4 or any(s != 2 for s in strides):
        raise _CannotExpress("timm's RegNet has exactly four stride-2 stages")
    # group_min_ratio=0.9 is timm's switch to torchvision's rounding (its *_tv models).
    cfg = lib.RegNetCfg(depth=arch.depth, w0=arch.w0, wa=arch.wa, wm=arch.wm,
                        group_size=arch.group_w, bottle_ratio=arch.bot_mul,
                        se_ratio=arch.se_ratio or 0.0, stem_width=obs.stem_channels,
                        group_min_ratio=0.9 if arch.width_rounding == 'torchvision' else 0.0)
    net = lib.RegNet(cfg, in_chans=obs.in_channels, num_classes=classes)
    return Reference(f'timm {_version("timm")}', net,
                     [net.stem] + [getattr(net, f's{i}') for i in range(1, 5)])


def _torchvision(lib: ModuleType, arch: ArchSpec, obs: ObservedArch, strides: Sequence[int],
                 classes: int) -> Reference:
    n = len(obs.widths)
    params = lib.BlockParams(depths=list(obs.depths), widths=list(obs.widths),
                             group_widths=list(obs.group_widths),
                             bottleneck_multipliers=[arch.bot_mul] * n, strides=list(strides),
                             se_ratio=arch.se_ratio)
    net = lib.RegNet(params, num_classes=classes, stem_width=obs.stem_channels)
    return Reference(f'torchvision {_version("torchvision")}', net,
                     [net.stem] + list(net.trunk_output.children()))


# The module holding each library's RegNet, and how to build it from observed weights.
_BUILDERS: Dict[str, Tuple[str, Callable[..., Reference]]] = {
    'pycls': ('pycls.models.anynet', _pycls), 'timm': ('timm.models.regnet', _timm),
    'torchvision': ('torchvision.models.regnet', _torchvision)}


def build_reference(layout: Layout, arch: ArchSpec, observed: ObservedArch,
                    strides: Sequence[int],
                    source_state: Dict[str, Tensor]) -> Tuple[Optional[Reference], str]:
    """Builds the source library's network and assigns the source weights to it.

    Args:
        layout: The source layout (pycls, timm and torchvision have references).
        arch: The matched arch.
        observed: The weights' structure.
        strides: Stage strides.
        source_state: The source state dict, in the source's keys (the
            reference uses these tensors; nothing is copied).

    Returns:
        The reference in eval mode and ``''``, or None and why there is none
        (no such library, not installed, or weights it cannot express).

    Raises:
        ConversionError: The source weights have the library's shapes but
            not its keys (only a missing classifier is allowed).
    """
    if layout.name not in _BUILDERS:
        return None, f'no reference network for {layout.name} weights'
    module, builder = _BUILDERS[layout.name]
    if observed.stem_channels is None or observed.in_channels != 3:
        return None, f'{layout.name}\'s RegNet takes 3-channel images through a stem'
    head_keys = {f'{module}.{leaf}' for module in layout.head_modules
                 for leaf in ('weight', 'bias')}
    head = next((source_state[k] for k in sorted(head_keys) if k in source_state), None)
    try:
        lib = import_module(module)  # not under the meta device: imports may build tensors
    except ImportError:
        return None, (f'{layout.name} is not installed, so the outputs were not compared with '
                      f"{layout.name}'s own RegNet (pip install {layout.name} to compare)")
    try:
        with torch.device('meta'):  # shapes only: the source tensors are assigned below
            ref = builder(lib, arch, observed, strides,
                          head.shape[0] if head is not None else 1000)
    except _CannotExpress as e:
        return None, str(e)
    try:
        missing, unexpected = ref.net.load_state_dict(source_state, strict=False, assign=True)
    except RuntimeError as e:  # a size mismatch: the library derives other widths
        detail = str(e).strip().splitlines()[-1].strip()
        return None, f'{ref.name}\'s RegNet built from this arch has other shapes ({detail})'
    missing = [k for k in missing if k not in head_keys and not k.endswith('num_batches_tracked')]
    if missing or unexpected:
        raise ConversionError(f'--verify: the source weights do not load into {ref.name}\'s '
                              f'RegNet: missing {missing[:3]}, unexpected {unexpected[:3]}')
    return ref.eval(), ''
