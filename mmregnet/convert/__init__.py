"""Converting published RegNet checkpoints into mmregnet's (= mmdet's) keys, safely and verifiably.

Sources: pycls (the official model zoo's ``.pyth``), timm, torchvision and
mmdet/mmdet3d/mmpretrain checkpoints, detected from their keys. The arch is read
off the tensor shapes and named as a preset or as an arch dict that reproduces
them. The result is a backbone state dict, or with the classifier kept, the
keys of an mmpretrain ``ImageClassifier`` (``backbone.*``, ``head.fc.*``).

Example:
    >>> import torch
    >>> from mmregnet import RegNet
    >>> from mmregnet.convert import convert_checkpoint
    >>> weights = RegNet('regnetx_200mf').state_dict()
    >>> result = convert_checkpoint({'state_dict': weights}, verify=True)
    >>> result.arch.name, result.checkpoint['meta']['source']['format']
    ('regnetx_200mf', 'mmdet')
"""
from ..checkpoint.arch_inference import ArchMatch, fit_arch, resolve_arch
from ..checkpoint.errors import ConversionError
from ..checkpoint.loading import load_checkpoint
from ..checkpoint.shapes import ObservedArch, read_arch
from .layouts import LAYOUTS, format_names
from .pipeline import ConversionResult, convert_checkpoint, convert_file
from .stemless import adapt_to_stemless

__all__ = ['ArchMatch', 'ConversionError', 'ConversionResult', 'LAYOUTS', 'ObservedArch',
           'adapt_to_stemless', 'convert_checkpoint', 'convert_file', 'fit_arch',
           'format_names', 'load_checkpoint', 'read_arch', 'resolve_arch']
