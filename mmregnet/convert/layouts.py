"""The state-dict key layouts of the published RegNet implementations, and their mapping.

Every layout names the same tensors: a stem conv+BN, per block a 1x1 conv,
a grouped 3x3 conv, an optional squeeze-and-excitation pair, a 1x1 conv (each
conv with its BN) and an optional projection shortcut, then a linear
classifier. Only the module paths differ; the parameter names (``weight``,
``running_mean``...) are the ones ``nn.Conv2d``/``nn.BatchNorm2d`` give
everywhere. The canonical layout is mmregnet's (= mmdet's ``RegNet``).
"""
import re
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Pattern, Tuple

from torch import Tensor

from ..checkpoint.errors import ConversionError

_LEAVES = frozenset(('weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked'))
_CANONICAL_BLOCK = ('conv1', 'bn1', 'conv2', 'bn2', 'se.fc1', 'se.fc2', 'conv3', 'bn3',
                    'downsample.0', 'downsample.1')


@dataclass(frozen=True)
class Layout:
    """One implementation's module paths, mapped onto mmregnet's.

    Attributes:
        name: The ``--src-format`` name.
        block: Matches a block's module path; groups ``stage`` (1-based),
            ``block`` and ``module`` (the path inside the block).
        block_base: The index of a stage's first block in ``block``.
        block_modules: Path inside a block -> mmregnet's path.
        stem_modules: Stem module path -> mmregnet's.
        head_modules: Classifier module path -> mmregnet's (``fc``).
        channel_order: The colour order the published weights expect.
        example: A typical key, for error messages.
    """

    name: str
    block: Pattern
    block_base: int
    block_modules: Mapping[str, str]
    stem_modules: Mapping[str, str]
    head_modules: Mapping[str, str]
    channel_order: str
    example: str

    def map_key(self, key: str) -> Optional[Tuple[str, str]]:
        """Maps one source key to mmregnet's.

        Args:
            key: A state-dict key in this layout, e.g. ``'s1.b1.f.a.weight'``.

        Returns:
            ``(part, mmregnet key)`` with part ``'stem'``, ``'block'`` or
            ``'head'``, or None if the key is not part of this layout.
        """
        module, _, leaf = key.rpartition('.')
        if leaf not in _LEAVES:
            return None
        if module in self.stem_modules:
            return 'stem', f'{self.stem_modules[module]}.{leaf}'
        if module in self.head_modules:
            return 'head', f'{self.head_modules[module]}.{leaf}'
        m = self.block.fullmatch(module)
        if m is None or m['module'] not in self.block_modules:
            return None
        index = int(m['block']) - self.block_base
        if index < 0:
            return None
        return 'block', f'layer{int(m["stage"])}.{index}.{self.block_modules[m["module"]]}.{leaf}'


_STAGE_BLOCK = re.compile(r's(?P<stage>\d+)\.b(?P<block>\d+)\.(?P<module>.+)')

LAYOUTS: Mapping[str, Layout] = {
    'pycls': Layout(
        name='pycls', block=_STAGE_BLOCK, block_base=1,
        block_modules={'f.a': 'conv1', 'f.a_bn': 'bn1', 'f.b': 'conv2', 'f.b_bn': 'bn2',
                       'f.se.f_ex.0': 'se.fc1', 'f.se.f_ex.2': 'se.fc2', 'f.c': 'conv3',
                       'f.c_bn': 'bn3', 'proj': 'downsample.0', 'bn': 'downsample.1'},
        stem_modules={'stem.conv': 'conv1', 'stem.bn': 'bn1'},
        head_modules={'head.fc': 'fc'}, channel_order='BGR', example='s1.b1.f.a.weight'),
    'timm': Layout(
        name='timm', block=_STAGE_BLOCK, block_base=1,
        block_modules={'conv1.conv': 'conv1', 'conv1.bn': 'bn1', 'conv2.conv': 'conv2',
                       'conv2.bn': 'bn2', 'se.fc1': 'se.fc1', 'se.fc2': 'se.fc2',
                       'conv3.conv': 'conv3', 'conv3.bn': 'bn3',
                       'downsample.conv': 'downsample.0', 'downsample.bn': 'downsample.1'},
        stem_modules={'stem.conv': 'conv1', 'stem.bn': 'bn1'},
        head_modules={'head.fc': 'fc'}, channel_order='RGB', example='s1.b1.conv1.conv.weight'),
    'torchvision': Layout(
        name='torchvision',
        block=re.compile(r'trunk_output\.block(?P<stage>\d+)\.block(?P=stage)-(?P<block>\d+)'
                         r'\.(?P<module>.+)'),
        block_base=0,
        block_modules={'f.a.0': 'conv1', 'f.a.1': 'bn1', 'f.b.0': 'conv2', 'f.b.1': 'bn2',
                       'f.se.fc1': 'se.fc1', 'f.se.fc2': 'se.fc2', 'f.c.0': 'conv3',
                       'f.c.1': 'bn3', 'proj.0': 'downsample.0', 'proj.1': 'downsample.1'},
        stem_modules={'stem.0': 'conv1', 'stem.1': 'bn1'},
        head_modules={'fc': 'fc'}, channel_order='RGB',
        example='trunk_output.block1.block1-0.f.a.0.weight'),
    'mmdet': Layout(
        name='mmdet', block=re.compile(r'layer(?P<stage>\d+)\.(?P<block>\d+)\.(?P<module>.+)'),
        block_base=0, block_modules={m: m for m in _CANONICAL_BLOCK},
        stem_modules={'conv1': 'conv1', 'bn1': 'bn1'},
        head_modules={'fc': 'fc'}, channel_order='as trained', example='layer1.0.conv1.weight'),
}


@dataclass(frozen=True)
class Mapped:
    """A state dict split into mmregnet-keyed parts.

    Attributes:
        layout: The source layout.
        backbone: Stem and block tensors under mmregnet's keys.
        head: Classifier tensors under mmregnet's keys (``fc.weight``, ``fc.bias``).
    """

    layout: Layout
    backbone: Dict[str, Tensor]
    head: Dict[str, Tensor]


def coverage(keys: List[str], layout: Layout) -> Tuple[int, int]:
    """Counts how much of a state dict a layout explains.

    Args:
        keys: State-dict keys.
        layout: A layout.

    Returns:
        How many of ``keys`` it maps to blocks, and how many it maps at all.
    """
    parts = [layout.map_key(k) for k in keys]
    return sum(p is not None and p[0] == 'block' for p in parts), sum(p is not None for p in parts)


def detect_layout(keys: List[str]) -> Optional[Layout]:
    """Detects a state dict's layout from its keys.

    Args:
        keys: State-dict keys.

    Returns:
        The layout that maps the most block keys (then the most keys), or
        None if no layout maps any block key.
    """
    best = max(LAYOUTS.values(), key=lambda layout: coverage(keys, layout))
    return best if coverage(keys, best)[0] else None


def map_state_dict(state: Mapping[str, Tensor], layout: Layout) -> Mapped:
    """Renames every tensor of ``state`` into mmregnet's keys.

    Args:
        state: A backbone (+ classifier) state dict in ``layout``.
        layout: Its layout.

    Returns:
        The backbone and head parts.

    Raises:
        ConversionError: A key that ``layout`` does not have (nothing is dropped
            silently), or two keys mapping onto one.
    """
    backbone: Dict[str, Tensor] = {}
    head: Dict[str, Tensor] = {}
    unknown = []
    for key, value in state.items():
        mapped = layout.map_key(key)
        if mapped is None:
            unknown.append(key)
            continue
        part, new_key = mapped
        target = head if part == 'head' else backbone
        if new_key in target:
            raise ConversionError(f'two {layout.name} keys map onto {new_key!r}')
        target[new_key] = value
    if unknown:
        raise ConversionError(
            f'{len(unknown)} key(s) are not part of a {layout.name} RegNet (e.g. {unknown[0]!r}; '
            f'expected keys like {layout.example!r}); is this another network?')
    return Mapped(layout, backbone, head)


def format_names() -> List[str]:
    """The accepted ``--src-format`` values."""
    return list(LAYOUTS)
