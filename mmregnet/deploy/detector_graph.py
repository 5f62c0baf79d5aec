"""PointPillars as one graph, points in, boxes out; and the detector deployed in PyTorch.

:class:`DetectorGraph` is the exported network: hard voxelization, pillar
encoder, scatter, backbone, neck, head and box decoder in one module of stock
ONNX operators.

The head's 4-D maps are handed to the decoder channels-last ``(B, H, W, C)``:
decoding reads every anchor's values together.
"""
import copy
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from .bn_folding import fuse_conv_bn
from .errors import DeployError
from .pillar_encoder import DeployHardVFE, PillarScatter, unsupported_reason
from .voxelize import HardVoxelizer, VoxelLayout


class ReusedAnchors:
    """A head's anchor generator that makes each feature-map size's anchors once.

    mmdet3d's heads rebuild every anchor of every level on each
    ``predict_by_feat`` call, though they depend only on the feature-map sizes
    and the device, the same for every frame an exported graph sees. The
    tensors handed out are shared between calls: the heads' decoding indexes
    and concatenates them and never writes into them.

    Args:
        generator: The head's ``prior_generator`` (an mmdet3d anchor generator).

    Example:
        >>> from mmdet3d.models.task_modules import Anchor3DRangeGenerator
        >>> anchors = ReusedAnchors(Anchor3DRangeGenerator([[0, -40, -1.8, 70, 40, -1.8]]))
        >>> first = anchors.grid_anchors([(4, 4)], device='cpu')
        >>> first[0] is anchors.grid_anchors([(4, 4)], device='cpu')[0], anchors.num_levels
        (True, 1)
    """

    #: Feature-map settings kept; a graph has one, a stage benchmark a few.
    MAX_SIZES = 4

    def __init__(self, generator: Any) -> None:
        self.generator = generator
        self.made: Dict[tuple, Any] = {}

    def grid_anchors(self, featmap_sizes: Sequence[Sequence[int]], device: Any = 'cuda'):
        """The generator's ``grid_anchors``, made on the first call for these sizes."""
        key = (tuple(tuple(int(v) for v in size) for size in featmap_sizes), str(device))
        if key not in self.made:
            if len(self.made) >= self.MAX_SIZES:
                self.made.clear()
            self.made[key] = self.generator.grid_anchors(featmap_sizes, device=device)
        return self.made[key]

    def __getattr__(self, name: str) -> Any:
        if name == 'generator':  # not set yet (copying): no recursion
            raise AttributeError(name)
        return getattr(self.generator, name)


def switch_detector_to_deploy(model: nn.Module) -> nn.Module:
    """Deploys a PointPillars detector in place for inference in PyTorch.

    The backbone is deployed (``switch_to_deploy`` where it has one); the
    neck's and head's conv+BN pairs are folded and their weights moved to
    channels-last; a plain ``HardVFE`` voxel encoder is replaced by
    :class:`~mmregnet.deploy.pillar_encoder.DeployHardVFE`, which computes
    only the real points of each pillar (other encoders are kept); the head's
    anchors are made once per feature-map size (:class:`ReusedAnchors`).

    Args:
        model: An mmdet3d detector with ``pts_backbone``.

    Returns:
        ``model``, in eval mode.
    """
    model.eval()
    head = getattr(model, 'pts_bbox_head', None)
    if head is not None and hasattr(head, 'prior_generator') \
            and not isinstance(head.prior_generator, ReusedAnchors):
        head.prior_generator = ReusedAnchors(head.prior_generator)
    backbone = model.pts_backbone
    if hasattr(backbone, 'switch_to_deploy'):
        backbone.switch_to_deploy()
    else:
        fuse_conv_bn(backbone)
        backbone.to(memory_format=torch.channels_last)
    encoder = getattr(model, 'pts_voxel_encoder', None)
    if encoder is not None and not unsupported_reason(encoder):
        model.pts_voxel_encoder = DeployHardVFE(encoder)
    for name in ('pts_neck', 'pts_bbox_head'):
        part = getattr(model, name, None)
        if part is not None:
            fuse_conv_bn(part)
            part.to(memory_format=torch.channels_last)
    return model


def head_output_kinds(head: nn.Module) -> List[str]:
    """Names of the head's per-level outputs, in the order its ``forward`` returns them."""
    kinds = ['cls_score', 'bbox_pred']
    if getattr(head, 'use_direction_classifier', False):
        kinds.append('dir_cls_pred')
    return kinds


def fixed_scale_neck(neck: nn.Module, backbone: nn.Module,
                     canvas: Sequence[int]) -> nn.Module:
    """The neck with its nearest upsampling by a fixed factor 2 where the levels allow it.

    mmdet's ``FPN`` upsamples each level to the size of the one below, read
    from the tensor at run time; in an ONNX graph that size is computed by
    shape operators, and ONNX Runtime then keeps the neck's tensors out of
    its blocked conv layout around each upsampling. Where every level is
    exactly twice the size of the next (the backbone's features of this
    canvas, found on the meta device), a factor of 2 gives the same values
    with static shapes.

    Args:
        neck: The detector's neck (returned as it is unless it is such an FPN).
        backbone: The backbone feeding it.
        canvas: ``(C, H, W)`` of the pseudo image.

    Returns:
        ``neck``, or a shallow copy (same submodules and weights) with
        ``upsample_cfg`` given ``scale_factor=2``; ``neck`` is not changed.
    """
    cfg = getattr(neck, 'upsample_cfg', None)
    if (type(neck).__name__ != 'FPN' or not isinstance(cfg, dict)
            or cfg.get('mode') != 'nearest' or set(cfg) != {'mode'}):
        return neck
    with torch.no_grad():
        feats = copy.deepcopy(backbone).to('meta')(torch.zeros(1, *canvas, device='meta'))
    sizes = [tuple(f.shape[-2:]) for f in feats][neck.start_level:neck.backbone_end_level]
    if any(big != (2 * small[0], 2 * small[1]) for big, small in zip(sizes, sizes[1:])):
        return neck
    fixed = copy.copy(neck)
    fixed.upsample_cfg = dict(cfg, scale_factor=2)
    return fixed


def channels_last_map(t: Tensor) -> Tensor:
    """A 4-D map as ``(B, H, W, C)``; other tensors (SSN's flat maps) as they are."""
    return t.permute(0, 2, 3, 1) if t.dim() == 4 else t


def voxel_layout(detector: nn.Module) -> VoxelLayout:
    """The test-time layout of a detector's voxelizer (its ``data_preprocessor.voxel_layer``).

    Raises:
        DeployError: A detector without a hard voxelizer.
    """
    pre = getattr(detector, 'data_preprocessor', None)
    layer = getattr(pre, 'voxel_layer', None)
    if layer is None or getattr(pre, 'voxel_type', 'hard') != 'hard':
        raise DeployError('the exported graph voxelizes as a hard voxel_layer; the detector\'s '
                          f'data_preprocessor is a {type(pre).__name__} without one')
    return VoxelLayout.from_config(dict(
        voxel_size=list(layer.voxel_size), point_cloud_range=list(layer.point_cloud_range),
        max_num_points=layer.max_num_points, max_voxels=layer.max_voxels))


class DetectorGraph(nn.Module):
    """PointPillars as one graph: a point cloud in, the head's maps or the boxes out.

    Voxelization (:class:`~mmregnet.deploy.voxelize.HardVoxelizer`), pillar
    encoder, scatter, backbone, neck, head and, given one, a box decoder: all
    modules that export to stock ONNX operators.

    Args:
        detector: An mmdet3d PointPillars detector in eval mode, deployed
            (:func:`switch_detector_to_deploy`) or not; its modules are shared,
            not copied, and a plain HardVFE is replaced by a
            :class:`~mmregnet.deploy.pillar_encoder.DeployHardVFE` copy.
        decoder: A module taking the head's flat channels-last maps of one
            sample and returning ``(bboxes_3d, scores_3d, labels_3d)``; None:
            :meth:`forward` returns the maps.

    Raises:
        DeployError: A voxelizer, encoder or middle encoder the graph cannot hold.
    """

    def __init__(self, detector: nn.Module, decoder: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.voxelizer = HardVoxelizer(voxel_layout(detector))
        encoder = detector.pts_voxel_encoder
        if not isinstance(encoder, DeployHardVFE):
            reason = unsupported_reason(encoder)
            if reason:
                raise DeployError(f'the exported graph holds a plain HardVFE pillar encoder '
                                  f'only: {reason}')
            encoder = DeployHardVFE(encoder)
        self.encoder = encoder
        try:
            self.scatter = PillarScatter.from_mmdet3d(detector.pts_middle_encoder)
        except ValueError as e:
            raise DeployError(str(e)) from None
        self.backbone = detector.pts_backbone
        self.neck = getattr(detector, 'pts_neck', None)
        if self.neck is not None:
            canvas = (self.scatter.in_channels, self.scatter.ny, self.scatter.nx)
            self.neck = fixed_scale_neck(self.neck, self.backbone, canvas)
        self.head = detector.pts_bbox_head
        self.kinds = head_output_kinds(self.head)
        self.decoder = decoder

    def forward(self, points: Tensor) -> Tuple[Tensor, ...]:
        """Detects boxes in one point cloud.

        Args:
            points: ``(N, C)`` float32, x, y, z first; N may be 0.

        Returns:
            With a decoder, ``(bboxes_3d, scores_3d, labels_3d)``: none for a
            cloud without a point inside the range (mmdet3d's ``test_step``
            cannot take one). Without, the head's maps kind by kind, level by
            level (see :attr:`kinds`), 4-D ones channels-last.
        """
        a = self.voxelizer(points)
        coors = nn.functional.pad(a.coors, (1, 0))  # sample 0
        feats = self.encoder(points.index_select(0, a.point), a.num_points, coors,
                             point_voxel=a.voxel, point_slot=a.slot,
                             max_points=self.voxelizer.layout.max_points)
        maps = self._maps(self.scatter(feats, coors, 1))
        if self.decoder is None:
            return maps
        detections = self.decoder(*maps)
        # A cloud without pillars has no detections: keep none of the empty canvas's.
        count = detections[0].shape[0] * (a.num_points.shape[0] > 0).long()
        return tuple(t[:count] for t in detections)

    def _maps(self, canvas: Tensor) -> Tuple[Tensor, ...]:
        x = self.backbone(canvas)
        if self.neck is not None:
            x = self.neck(x)
        return self.head_outputs(x)

    def head_outputs(self, feats: List[Tensor]) -> Tuple[Tensor, ...]:
        """The head's maps on neck features, flat and channels-last as :meth:`forward` gives."""
        maps = self.head(feats)
        return tuple(channels_last_map(t) for kind in maps[:len(self.kinds)] for t in kind)
