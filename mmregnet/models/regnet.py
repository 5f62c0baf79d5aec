"""The RegNet backbone for mmdet and mmdet3d detectors."""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch  # noqa: F401 - the docstring examples run with the module's globals
import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule, constant_init
from mmengine.registry import DefaultScope
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from ..arch import ArchLike, get_arch, se_width
from ..checkpoint.fit import check_pretrained
from .arguments import (check_bool, check_channels, check_conv_cfg, check_int,
                        check_open_mmlab_arch, check_out_indices, check_per_stage,
                        check_size, check_stage_dcn, check_style, check_with_stem,
                        library_defaults, pretrained_init_cfg, refuse_unless_off)
from .blocks import Bottleneck
from .fusion import switch_to_deploy

ConfigType = Union[Dict, List[Dict]]


def _pretrained_options(init_cfg: ConfigType) -> Tuple[ConfigType, Dict[str, bool]]:
    """Takes ``allow_partial``/``allow_nonfinite`` out of a Pretrained init_cfg (mmengine's
    PretrainedInit would reject them); returns the init_cfg left and the options."""
    if not (isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained'):
        return init_cfg, {}
    init_cfg = dict(init_cfg)
    options = {k: check_bool(f'init_cfg {k}', init_cfg.pop(k)) for k in
               ('allow_partial', 'allow_nonfinite') if k in init_cfg}
    return init_cfg, options


def _current_scope() -> Optional[str]:
    """The default scope of the config being built (mmengine's), or None outside one."""
    scope = DefaultScope.get_current_instance()
    return scope.scope_name if scope is not None else None


class RegNet(BaseModule):
    """RegNet backbone (Radosavovic et al., "Designing Network Design Spaces", 2020).

    Emits one feature map per entry of ``out_indices`` for an FPN or
    SECOND-FPN neck. With the stem it takes images; with ``with_stem=False``
    it takes a bird's-eye-view pseudo image whose voxel encoder plays the stem
    (PointPillars: ``in_channels=64, strides=(1, 2, 2, 2)``; or
    :class:`~mmregnet.models.NoStemRegNet` with mmdet3d's arguments). RegNetX
    state dicts use the keys of mmdet's ``RegNet``; RegNetY adds ``se.fc1``/``se.fc2``.

    The arguments are those of mmdet's ``RegNet``, in its order and with its
    meaning, then this backbone's own (``with_stem``). mmpretrain's configs
    build it too: in mmpretrain's scope ``out_indices`` and ``norm_eval``
    default to mmpretrain's values (:func:`~mmregnet.models.arguments.library_defaults`).

    Args:
        arch: A preset name (``'regnetx_400mf'`` ... ``'regnety_32gf'``, see
            :data:`mmregnet.arch.PRESETS`) or a dict with ``w0``, ``wa``,
            ``wm``, ``depth``, ``group_w``, ``bot_mul`` and optionally
            ``se_ratio``.
        in_channels: Channels of the input (1 to ``MAX_WIDTH``, 32768).
        stem_channels: Output channels of the stem (1 to 32768).
        base_channels: Accepted for mmdet's configs and checked (a channel
            count); RegNet does not use it, as in mmdet.
        strides: Stride of each stage's first block (default 2 everywhere; at most 64).
        dilations: Dilation of each stage's 3x3 convs (default 1 everywhere; at most 64).
        out_indices: Stages whose outputs are returned, 0-based, increasing
            (a sequence, even for one stage: ``(3,)``); default every stage
            (mmpretrain's scope: the last).
        style: ``'pytorch'``: a stage's stride is on the 3x3 conv; ``'caffe'``:
            on the first 1x1 conv (same weights, other features).
        deep_stem: Only False (mmdet's RegNet has no deep stem either).
        avg_down: Only False (strided 1x1 projection shortcuts).
        frozen_stages: Freeze the stem (0) and stages ``1..frozen_stages``;
            -1 freezes nothing.
        conv_cfg: None or ``dict(type='Conv2d')``: plain convolutions.
        norm_cfg: mmcv norm config: BN, SyncBN, naiveSyncBN2d, GN...
        norm_eval: Keep norm layers in eval mode (frozen statistics) in
            training; default True (mmpretrain's scope: False).
        dcn: mmcv's deformable 3x3 conv for the stages in ``stage_with_dcn``:
            ``dict(type='DCNv2', deform_groups=1, fallback_on_stride=False)``
            (or ``'DCN'``), as mmdet; None for none.
        stage_with_dcn: One bool per stage: where ``dcn`` applies.
        plugins: Only None (mmdet's ResNet plugins are not built).
        with_cp: Recompute each block in backward to save memory.
        zero_init_residual: Zero the last norm of each block's residual branch
            (only with the default initialisation).
        pretrained: Deprecated, as in mmdet: a checkpoint path standing for
            ``init_cfg=dict(type='Pretrained', checkpoint=pretrained)``.
        init_cfg: mmengine init config, e.g. ``dict(type='Pretrained', checkpoint=...)``;
            a Pretrained checkpoint that does not fit is refused unless it adds
            ``allow_partial=True`` (and NaN/Inf weights unless ``allow_nonfinite=True``).
        with_stem: Whether to start with the 3x3 stride-2 conv stem (a bool).
            Unsaid, the stem is built, except that ``strides[0] == 1`` (mmdet3d's
            stem-less arguments) is refused, naming ``NoStemRegNet``.

    Raises:
        mmregnet.errors.InputError: A bad argument, or an mmdet option that
            would build a network this one does not (a ``ValueError``
            naming it, the rule and the value), raised before anything is
            allocated; booleans are refused where integers are meant, and a
            backbone of over 1e10 parameters is refused.

    Attributes:
        out_channels (tuple[int]): Channels of each output, in order.
        out_strides (tuple[int]): Stride of each output relative to the input.

    Example:
        >>> import torch
        >>> net = RegNet('regnetx_400mf').eval()
        >>> net.out_channels, net.out_strides
        ((32, 64, 160, 384), (4, 8, 16, 32))
        >>> [tuple(o.shape) for o in net(torch.rand(1, 3, 64, 64))]
        [(1, 32, 16, 16), (1, 64, 8, 8), (1, 160, 4, 4), (1, 384, 2, 2)]
        >>> bev = RegNet('regnetx_400mf', in_channels=64, with_stem=False,
        ...              strides=(1, 2, 2, 2), out_indices=(1, 2, 3)).eval()
        >>> [tuple(o.shape) for o in bev(torch.rand(1, 64, 32, 32))]
        [(1, 64, 16, 16), (1, 160, 8, 8), (1, 384, 4, 4)]
    """

    def __init__(self,
                 arch: ArchLike,
                 in_channels: int = 3,
                 stem_channels: int = 32,
                 base_channels: int = 32,
                 strides: Optional[Sequence[int]] = None,
                 dilations: Optional[Sequence[int]] = None,
                 out_indices: Optional[Sequence[int]] = None,
                 style: str = 'pytorch',
                 deep_stem: bool = False,
                 avg_down: bool = False,
                 frozen_stages: int = -1,
                 conv_cfg: Optional[Dict] = None,
                 norm_cfg: Dict = dict(type='BN', requires_grad=True),
                 norm_eval: Optional[bool] = None,
                 dcn: Optional[Dict] = None,
                 stage_with_dcn: Sequence[bool] = (False, False, False, False),
                 plugins: Optional[List[Dict]] = None,
                 with_cp: bool = False,
                 zero_init_residual: bool = True,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[ConfigType] = None,
                 *,
                 with_stem: Optional[bool] = None) -> None:
        # Every argument is checked, and the size bounded, before a tensor is allocated.
        init_cfg = pretrained_init_cfg(pretrained, init_cfg)
        self._default_init = init_cfg is None
        if init_cfg is None:
            init_cfg = [dict(type='Kaiming', layer='Conv2d'),
                        dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])]
        init_cfg, self._pretrained_options = _pretrained_options(init_cfg)
        super().__init__(init_cfg)
        self.arch = get_arch(arch)
        design = self.arch.design()
        num_stages = design.num_stages
        defaults = library_defaults(_current_scope(), num_stages)
        self.strides = check_per_stage('strides', (2,) * num_stages if strides is None
                                       else strides, num_stages)
        self.dilations = check_per_stage('dilations', (1,) * num_stages if dilations is None
                                         else dilations, num_stages)
        self.out_indices = check_out_indices(
            defaults['out_indices'] if out_indices is None else out_indices, num_stages)
        frozen_stages = check_int('frozen_stages', frozen_stages, -1, num_stages,
                                  f'an integer in -1..{num_stages} (-1: none, 0: the stem only)')
        in_channels = check_channels('in_channels', in_channels)
        stem_channels = check_channels('stem_channels', stem_channels)
        check_channels('base_channels', base_channels)
        with_stem = check_with_stem(with_stem, self.strides, stem_channels)
        self.style = check_style(style)
        refuse_unless_off('deep_stem', deep_stem, False, 'False (the 3x3 stride-2 stem)')
        refuse_unless_off('avg_down', avg_down, False,
                          'False (strided 1x1 projection shortcuts)')
        refuse_unless_off('plugins', plugins, None, 'None')
        check_conv_cfg(conv_cfg)
        stage_dcn = check_stage_dcn(dcn, stage_with_dcn, num_stages)
        norm_eval = defaults['norm_eval'] if norm_eval is None else norm_eval
        for name, value in (('norm_eval', norm_eval), ('with_cp', with_cp),
                            ('zero_init_residual', zero_init_residual)):
            check_bool(name, value)
        check_size(self.arch, in_channels, with_stem, stem_channels, self.strides,
                   self.dilations)
        self.in_channels = in_channels
        self.with_stem = with_stem
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.zero_init_residual = zero_init_residual
        self.dcn = dcn
        self.deploy = False  # set by switch_to_deploy()

        channels = in_channels
        if with_stem:
            self.conv1 = nn.Conv2d(in_channels, stem_channels, 3, stride=2, padding=1,
                                   bias=False)
            self.norm1_name, norm1 = build_norm_layer(norm_cfg, stem_channels, postfix=1)
            self.add_module(self.norm1_name, norm1)
            self.relu = nn.ReLU(inplace=True)
            channels = stem_channels
        self.res_layers: List[str] = []
        for i, (width, depth) in enumerate(zip(design.widths, design.depths)):
            blocks = []
            for j in range(depth):
                blocks.append(Bottleneck(
                    channels, width, design.bottleneck_widths[i], design.groups[i],
                    stride=self.strides[i] if j == 0 else 1, dilation=self.dilations[i],
                    se_channels=se_width(channels, self.arch.se_ratio), norm_cfg=norm_cfg,
                    with_cp=with_cp, stride_on_1x1=self.style == 'caffe', dcn=stage_dcn[i]))
                channels = width
            self.add_module(f'layer{i + 1}', nn.Sequential(*blocks))
            self.res_layers.append(f'layer{i + 1}')
        self.stage_widths = design.widths
        self.out_channels = tuple(design.widths[i] for i in self.out_indices)
        stage_strides = design.stage_strides(with_stem, tuple(self.strides))
        self.out_strides = tuple(stage_strides[i] for i in self.out_indices)
        self._freeze_stages()

    @property
    def norm1(self) -> nn.Module:
        """The stem's norm layer."""
        return getattr(self, self.norm1_name)

    def init_weights(self) -> None:
        """Applies ``init_cfg``; with the default one, zero-inits residual ends.

        A ``Pretrained`` checkpoint is checked first: an ``open-mmlab://`` one
        of another preset, or a local file whose backbone does not fit this
        one, is refused, naming both archs, and so are NaN or infinite
        weights, unless the init_cfg says ``allow_partial=True`` /
        ``allow_nonfinite=True`` (:func:`~mmregnet.models.arguments.check_open_mmlab_arch`,
        :func:`mmregnet.checkpoint.fit.check_pretrained`).
        """
        if isinstance(self.init_cfg, dict) and self.init_cfg.get('type') == 'Pretrained' \
                and not getattr(self, '_is_init', False):
            check_open_mmlab_arch(self.init_cfg.get('checkpoint'), self.arch,
                                  self._pretrained_options.get('allow_partial', False))
            check_pretrained(self, self.init_cfg, **self._pretrained_options)
        super().init_weights()
        if self._default_init and self.zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    constant_init(m.norm3, 0)

    def _freeze_stages(self) -> None:
        frozen = []
        if self.with_stem and self.frozen_stages >= 0:
            frozen += [self.conv1, self.norm1]
        frozen += [getattr(self, f'layer{i}') for i in range(1, self.frozen_stages + 1)]
        for module in frozen:
            module.eval()
            for p in module.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True) -> 'RegNet':
        """Sets training mode, keeping frozen stages and (``norm_eval``) norms in eval."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def switch_to_deploy(self) -> 'RegNet':
        """Makes this backbone its faster inference form, in place and for good.

        Folds BatchNorms into convs (in float64) and moves the weights to
        channels-last; the forward stays this module's own, so outputs come
        out channels-last with values within float rounding of the eval
        model. See :mod:`mmregnet.models.fusion`. A second call does nothing.

        Returns:
            ``self``, in eval mode.

        Raises:
            InputError: Deformable convs (``dcn``); nothing is folded.
        """
        return switch_to_deploy(self)

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """Runs the backbone.

        Args:
            x: ``(N, in_channels, H, W)``.

        Returns:
            One ``(N, out_channels[k], H / out_strides[k], W / out_strides[k])``
            tensor per entry of ``out_indices`` (sizes rounded up); channels-last
            in memory once deployed (the weights' format decides).
        """
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'RegNet expects input of shape (N, {self.in_channels}, H, W) '
                             f'(in_channels={self.in_channels}), got {tuple(x.shape)}')
        if self.with_stem:
            x = self.relu(self.norm1(self.conv1(x)))
        outs = []
        for i, name in enumerate(self.res_layers):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
