"""The source libraries' own networks, built to the observed structure, as references.

When pycls, timm or torchvision is importable, ``--verify`` builds that
library's RegNet with the weights' exact stage widths, loads the *source*
state dict into it strictly, and compares its stage outputs with mmregnet's.
"""
from dataclasses import dataclass
from importlib import metadata
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch.nn as nn
from torch import Tensor

from ..arch import ArchSpec
from .errors import ConversionError
from .layouts import Layout
from .shapes import ObservedArch


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


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:  # imported from a source tree
        return '(unknown version)'


def _pycls(arch: ArchSpec, obs: ObservedArch, strides: Sequence[int], classes: int) -> Reference:
    from pycls.models.anynet import AnyNet
    n = len(obs.widths)
    net = AnyNet(stem_type='simple_stem_in', stem_w=obs.stem_channels,
                 block_type='res_bottleneck_block', ds=list(obs.depths), ws=list(obs.widths),
                 ss=list(strides), bms=[arch.bot_mul] * n, gws=list(obs.group_widths),
                 se_r=arch.se_ratio, nc=classes)
    return Reference(f'pycls {_version("pycls")}', net,
                     [net.stem] + [getattr(net, f's{i}') for i in range(1, n + 1)])


def _timm(arch: ArchSpec, obs: ObservedArch, strides: Sequence[int], classes: int) -> Reference:
    from timm.models.regnet import RegNet, RegNetCfg
    cfg = RegNetCfg(depth=arch.depth, w0=arch.w0, wa=arch.wa, wm=arch.wm,
                    group_size=arch.group_w, bottle_ratio=arch.bot_mul,
                    se_ratio=arch.se_ratio or 0.0, stem_width=obs.stem_channels)
    net = RegNet(cfg, in_chans=obs.in_channels, num_classes=classes)
    return Reference(f'timm {_version("timm")}', net,
                     [net.stem] + [getattr(net, f's{i}') for i in range(1, len(obs.widths) + 1)])


def _torchvision(arch: ArchSpec, obs: ObservedArch, strides: Sequence[int],
                 classes: int) -> Reference:
    from torchvision.models.regnet import BlockParams, RegNet
    n = len(obs.widths)
    params = BlockParams(depths=list(obs.depths), widths=list(obs.widths),
                         group_widths=list(obs.group_widths),
                         bottleneck_multipliers=[arch.bot_mul] * n, strides=list(strides),
                         se_ratio=arch.se_ratio)
    net = RegNet(params, num_classes=classes, stem_width=obs.stem_channels)
    return Reference(f'torchvision {_version("torchvision")}', net,
                     [net.stem] + list(net.trunk_output.children()))


_BUILDERS: Dict[str, Callable[..., Reference]] = {
    'pycls': _pycls, 'timm': _timm, 'torchvision': _torchvision}


def build_reference(layout: Layout, arch: ArchSpec, observed: ObservedArch,
                    strides: Sequence[int],
                    source_state: Dict[str, Tensor]) -> Tuple[Optional[Reference], str]:
    """Builds the source library's network and loads the source weights into it.

    Args:
        layout: The source layout (pycls, timm and torchvision have references).
        arch: The matched arch.
        observed: The weights' structure.
        strides: Stage strides.
        source_state: The source state dict, in the source's keys.

    Returns:
        The reference in eval mode and ``''``, or None and why there is none
        (no such library, not importable, or weights it cannot express).

    Raises:
        ConversionError: The source weights do not load into the library's
            network (only a missing classifier is allowed).
    """
    builder = _BUILDERS.get(layout.name)
    if builder is None:
        return None, f'no reference network for {layout.name} weights'
    if observed.stem_channels is None or observed.in_channels != 3:
        return None, f'{layout.name}\'s RegNet takes 3-channel images through a stem'
    head_keys = {f'{module}.{leaf}' for module in layout.head_modules
                 for leaf in ('weight', 'bias')}
    head = next((source_state[k] for k in sorted(head_keys) if k in source_state), None)
    try:
        ref = builder(arch, observed, strides, head.shape[0] if head is not None else 1000)
    except ImportError:
        return None, f'{layout.name} is not importable'
    try:
        missing, unexpected = ref.net.load_state_dict(source_state, strict=False)
    except RuntimeError as e:
        raise ConversionError(f'--verify: the source weights do not load into {ref.name}\'s '
                              f'RegNet: {str(e).strip().splitlines()[-1].strip()}') from None
    missing = [k for k in missing if k not in head_keys]
    if missing or unexpected:
        raise ConversionError(f'--verify: the source weights do not load into {ref.name}\'s '
                              f'RegNet: missing {missing[:3]}, unexpected {unexpected[:3]}')
    return ref.eval(), ''
