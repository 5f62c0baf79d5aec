"""mmregnet's models, registered for mmdet3d configs and in the ``mmregnet`` scope."""
from ..registry import MODELS, PARENT_MODELS
from .blocks import Bottleneck, SqueezeExcite
from .nostem import NoStemRegNet
from .regnet import RegNet

MODELS.register_module(module=RegNet)
# mmdet3d has no class called RegNet (it has NoStemRegNet), so this adds a name
# to its scope and replaces nothing; in mmdet's scope 'RegNet' stays mmdet's.
if PARENT_MODELS.scope == 'mmdet3d':
    PARENT_MODELS.register_module(module=RegNet)
# In the mmregnet scope only: mmdet3d configs' plain 'NoStemRegNet' stays mmdet3d's, and
# 'mmregnet.NoStemRegNet' finds this one before the parent registry's class of that name.
MODELS.register_module(module=NoStemRegNet)

__all__ = ['RegNet', 'NoStemRegNet', 'Bottleneck', 'SqueezeExcite']
