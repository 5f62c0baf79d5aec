"""What mmpretrain classifier configs need from mmregnet: the backbone, the head's
input width and the input normalisation each weight source expects.

The configs in ``configs/classification/`` call these at load time, so the
numbers come from the arch table rather than being typed in. Light: no torch,
no OpenMMLab import.

Example:
    >>> classifier_backbone('regnetx_400mf')['out_indices'], head_channels('regnetx_400mf')
    ((3,), 384)
    >>> input_normalization(WEIGHT_SOURCE_ORDER['pycls'])
    {'mean': [103.53, 116.28, 123.675], 'std': [57.375, 57.12, 58.395], 'to_rgb': False}
"""
from typing import Any, Dict

from .arch import ArchLike, get_arch

#: ImageNet's per-channel mean and std on the 0..255 scale, in RGB order.
IMAGENET_MEAN_RGB = (123.675, 116.28, 103.53)
IMAGENET_STD_RGB = (58.395, 57.12, 57.375)

#: The channel order each source's ImageNet weights were trained on. pycls
#: (and mmpretrain, which trained its RegNets with pycls's recipe) fed OpenCV's
#: BGR images; torchvision and timm feed RGB. All use the ImageNet statistics,
#: in their own channel order.
WEIGHT_SOURCE_ORDER = {'pycls': 'BGR', 'mmpretrain': 'BGR', 'timm': 'RGB',
                       'torchvision': 'RGB'}


def classifier_backbone(arch: ArchLike, **overrides: Any) -> Dict[str, Any]:
    """The backbone config of an mmpretrain ``ImageClassifier`` with mmregnet's RegNet.

    The last stage only (for the pooling neck), every norm trained, nothing
    frozen: what mmpretrain's own RegNet does by default.
    ``type='mmregnet.RegNet'`` names the class in any default scope.

    Args:
        arch: A preset name or arch dict.
        **overrides: Backbone arguments that differ (e.g. ``init_cfg``), and
            ``_delete_=True`` to replace a base config's backbone outright
            (another class, or a preset name replaced by an arch dict).
    """
    num_stages = get_arch(arch).design().num_stages  # fails at config load for a bad arch
    return dict(dict(type='mmregnet.RegNet', arch=arch, out_indices=(num_stages - 1,),
                     frozen_stages=-1, norm_cfg=dict(type='BN', requires_grad=True),
                     norm_eval=False), **overrides)


def head_channels(arch: ArchLike) -> int:
    """Input channels of the linear head: the width of the arch's last stage."""
    return get_arch(arch).design().widths[-1]


def torchvision_arch(name: str) -> Dict[str, Any]:
    """The arch dict of a preset with torchvision's width rounding.

    torchvision's X-400MF, Y-800MF and Y-8.0GF (and timm's ``*_tv`` models)
    have other stage widths than pycls's presets of the same names; their
    weights need this arch. For torchvision's other RegNets both roundings agree.

    Args:
        name: A preset name.
    """
    return dict(get_arch(name).to_dict(), width_rounding='torchvision')


def input_normalization(order: str) -> Dict[str, Any]:
    """The data preprocessor settings for weights trained on ``order`` images.

    Args:
        order: ``'BGR'`` (pycls's and mmpretrain's weights) or ``'RGB'``
            (timm's and torchvision's), see :data:`WEIGHT_SOURCE_ORDER`.

    Returns:
        ``mean``, ``std`` (ImageNet's, 0..255 scale, in the model's channel
        order) and ``to_rgb`` for mmpretrain's ``ClsDataPreprocessor``, which
        receives the BGR images that mmcv loads.
    """
    if order not in ('BGR', 'RGB'):
        raise ValueError(f"channel order must be 'BGR' or 'RGB', got {order!r}")
    index = [0, 1, 2] if order == 'RGB' else [2, 1, 0]
    return dict(mean=[IMAGENET_MEAN_RGB[i] for i in index],
                std=[IMAGENET_STD_RGB[i] for i in index], to_rgb=order == 'RGB')
