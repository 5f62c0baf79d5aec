"""mmregnet: RegNet backbones for OpenMMLab detectors.

``custom_imports=dict(imports=['mmregnet'])`` in a config registers the
``RegNet`` backbone (``type='RegNet'`` in mmdet3d configs, ``'mmregnet.RegNet'``
anywhere).
"""
from .arch import PRESETS, ArchSpec, StageDesign, arch_name, get_arch
from .complexity import complexity
from .detection import NeckChannelsCheckHook, check_neck_channels, stage_channels
from .models import RegNet

__version__ = '0.1.0'
__all__ = ['PRESETS', 'ArchSpec', 'StageDesign', 'RegNet', 'NeckChannelsCheckHook',
           'arch_name', 'check_neck_channels', 'complexity', 'get_arch', 'stage_channels',
           '__version__']
