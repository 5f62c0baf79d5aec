"""mmregnet: RegNet backbones for OpenMMLab detectors and classifiers.

``custom_imports=dict(imports=['mmregnet'])`` in a config registers the
``RegNet`` backbone (``type='RegNet'`` in mmdet3d configs, ``'mmregnet.RegNet'``
in any scope), ``mmregnet.NoStemRegNet`` (mmdet3d's stem-less arguments) and
``mmregnet.NeckChannelsCheckHook``.

Importing the package is light: the arch table and :func:`complexity` need
neither torch nor the OpenMMLab stack, so ``mmregnet list`` and the
design-space tools start at once. The backbone, the hooks and the registries
are imported on first use (``mmregnet.RegNet``, ``import mmregnet.models``),
and right away when the OpenMMLab stack is already loaded, which is always the
case when a config's ``custom_imports`` names this package.
"""
import importlib
import sys
from typing import Any

from .arch import PRESETS, ArchSpec, StageDesign, arch_name, get_arch
from .backbone_configs import bev_backbone, image_backbone, stage_channels
from .complexity import complexity

__version__ = '0.1.0'

#: Public names whose modules need torch and the OpenMMLab stack: name -> module.
_LAZY = {
    'RegNet': 'mmregnet.models',
    'NoStemRegNet': 'mmregnet.models',
    'NeckChannelsCheckHook': 'mmregnet.detection',
    'check_neck_channels': 'mmregnet.detection',
    # Also how type='mmregnet.PortableCheckpointHook' resolves outside mmdet3d's scope.
    'PortableCheckpointHook': 'mmregnet.runtime.portable_checkpoint',
    'AtomicCheckpointHook': 'mmregnet.runtime.atomic_saves',
    'AtomicDumpResults': 'mmregnet.runtime.atomic_saves',
}

__all__ = ['PRESETS', 'ArchSpec', 'StageDesign', 'arch_name', 'bev_backbone', 'complexity',
           'get_arch', 'image_backbone', 'stage_channels', '__version__', *_LAZY]


def __getattr__(name: str) -> Any:
    """Imports a heavy public name (see ``_LAZY``) when it is first asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mmregnet' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


# A config's custom_imports runs with mmengine (hence torch) already loaded, and
# registration must happen then: a later build of type='RegNet' has no other way
# to reach this package.
if 'mmengine' in sys.modules:
    importlib.import_module('mmregnet.models')
    importlib.import_module('mmregnet.detection')
