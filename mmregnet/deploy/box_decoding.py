"""mmdet3d's box decoding as an exportable module: the head's maps in, the final boxes out.

:class:`BoxDecoder` computes what mmdet3d 1.4's ``predict_by_feat`` of an
``Anchor3DHead`` (and of ``FreeAnchor3DHead``, which inherits it, and of SSN's
``ShapeAwareHead``) returns for one sample: sigmoid or softmax scores,
``nms_pre`` best anchors per level, the box coder's decoding against the
anchors of the fixed grid (constants of the graph), multi-class BEV NMS
(:mod:`~mmregnet.deploy.rotated_nms`), ``max_num``, and the direction
classifier's correction of the yaw. The config's test settings are frozen in.
"""
import dataclasses
import math
from typing import Any, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmdet3d.models.dense_heads import Anchor3DHead, ShapeAwareHead
from mmdet3d.models.dense_heads.base_3d_dense_head import Base3DDenseHead
from mmdet3d.models.task_modules import DeltaXYZWLHRBBoxCoder
from mmdet3d.structures import limit_period
from torch import Tensor

from .errors import DeployError
from .rotated_nms import multiclass_nms

#: The ``predict_by_feat`` this module reproduces, by the methods that define it.
_DECODERS = {
    (Base3DDenseHead.predict_by_feat, Base3DDenseHead._predict_by_feat_single): 'Anchor3DHead',
    (ShapeAwareHead.predict_by_feat, ShapeAwareHead._predict_by_feat_single): 'ShapeAwareHead'}


@dataclasses.dataclass(frozen=True)
class DecodeSettings:
    """A head's decoding settings, as its ``predict_by_feat`` reads them.

    Attributes:
        num_classes: Score columns of the head (with the background for softmax).
        sigmoid: Sigmoid scores, or softmax with a last background column.
        box_dim: Values per box (7, or 9 with velocity).
        nms_pre: Best anchors kept per level before NMS (<= 0: all).
        score_thr: A box is a candidate of a class whose score is above it.
        nms_thr: IoU at which a box suppresses a lower one of its class.
        max_num: Most boxes returned.
        rotated: Rotated BEV NMS (``use_rotate_nms``) or axis-aligned.
        dir_offset: The head's ``dir_offset`` (yaw correction).
        dir_limit_offset: The head's ``dir_limit_offset``.
    """

    num_classes: int
    sigmoid: bool
    box_dim: int
    nms_pre: int
    score_thr: float
    nms_thr: float
    max_num: int
    rotated: bool
    dir_offset: float
    dir_limit_offset: float


def decode_settings(head: nn.Module, cfg: Optional[Any] = None) -> DecodeSettings:
    """The settings of ``head`` with test config ``cfg`` (default: the head's ``test_cfg``).

    Raises:
        DeployError: A head or setting this module does not reproduce.
    """
    name = type(head).__name__
    methods = (getattr(type(head), 'predict_by_feat', None),
               getattr(type(head), '_predict_by_feat_single', None))
    if not isinstance(head, Anchor3DHead) or methods not in _DECODERS:
        raise DeployError(f'box decoding in the graph reproduces {", ".join(_DECODERS.values())}'
                          f' and their subclasses that keep its predict_by_feat, got {name}')
    if not getattr(head, 'use_direction_classifier', False):
        raise DeployError(f'{name} without use_direction_classifier cannot predict in mmdet3d '
                          '1.4 (its predict_by_feat reads the direction maps); expected True')
    if type(head.bbox_coder) is not DeltaXYZWLHRBBoxCoder:
        raise DeployError(f'box decoding in the graph reproduces DeltaXYZWLHRBBoxCoder, got '
                          f'{type(head.bbox_coder).__name__}')
    cfg = head.test_cfg if cfg is None else cfg
    if cfg is None:
        raise DeployError(f'{name} has no test_cfg; expected model.test_cfg.pts with nms_thr, '
                          'max_num and use_rotate_nms')
    missing = [key for key in ('nms_thr', 'max_num', 'use_rotate_nms') if key not in cfg]
    if missing:
        raise DeployError(f'test_cfg.pts lacks {", ".join(missing)} (mmdet3d reads them); got '
                          f'{dict(cfg)}')
    settings = DecodeSettings(
        num_classes=int(head.num_classes), sigmoid=bool(head.use_sigmoid_cls),
        box_dim=int(head.box_code_size), nms_pre=int(cfg.get('nms_pre', -1)),
        score_thr=float(cfg.get('score_thr', 0)), nms_thr=float(cfg['nms_thr']),
        max_num=int(cfg['max_num']), rotated=bool(cfg['use_rotate_nms']),
        dir_offset=float(head.dir_offset), dir_limit_offset=float(head.dir_limit_offset))
    if settings.max_num < 1:
        raise DeployError(f'test_cfg.pts.max_num must be >= 1, got {settings.max_num}')
    if not settings.nms_thr > 0:
        raise DeployError(f'test_cfg.pts.nms_thr must be > 0 for the graph (at {settings.nms_thr} '
                          'every box suppresses every lower one of its class)')
    return settings


class AnchorGrid(nn.Module):
    """Anchors of one map (or one task of SSN's), given back for anchor indices.

    A grid of ``(H, W, A)`` anchors whose x depends on the column only, y on
    the row only and the other values on the anchor type only (the aligned
    range generators' grids) is kept as three small tables, which the graph
    indexes; any other as it is.

    Args:
        anchors: ``(N, D)`` anchors, in the order of the head's maps.
        grid: ``(H, W)`` of the map, or None to keep the table as it is.
    """

    def __init__(self, anchors: Tensor, grid: Optional[Sequence[int]] = None) -> None:
        super().__init__()
        self.count, self.dim = anchors.shape
        self.shape: Optional[Tuple[int, int, int]] = None
        if grid is not None and self.count % (int(grid[0]) * int(grid[1])) == 0:
            h, w = int(grid[0]), int(grid[1])
            cube = anchors.view(h, w, -1, self.dim)
            xs, ys, rest = cube[0, :, 0, 0], cube[:, 0, 0, 1], cube[0, 0, :, 2:]
            if (torch.equal(cube[..., 0], xs[None, :, None].expand_as(cube[..., 0]))
                    and torch.equal(cube[..., 1], ys[:, None, None].expand_as(cube[..., 1]))
                    and torch.equal(cube[..., 2:], rest[None, None].expand_as(cube[..., 2:]))):
                self.shape = (h, w, cube.shape[2])
                self.register_buffer('xs', xs.clone())
                self.register_buffer('ys', ys.clone())
                self.register_buffer('rest', rest.clone())
                return
        self.register_buffer('anchors', anchors.clone())

    def forward(self, index: Optional[Tensor] = None) -> Tensor:
        """``(K, D)`` anchors at ``index`` (``(K,)``), or all of them when None."""
        if self.shape is None:
            return self.anchors if index is None else self.anchors[index]
        if index is None:
            index = torch.arange(self.count, device=self.xs.device)
        _, w, a = self.shape
        return torch.cat([self.xs[(index // a) % w, None], self.ys[index // (a * w), None],
                          self.rest[index % a]], 1)


class AnchorTable(nn.Module):
    """The anchors of one level: one :class:`AnchorGrid`, or SSN's one per task, end to end.

    Args:
        parts: ``(anchors, grid)`` of each part, in the order of the level's map.
    """

    def __init__(self, parts: Sequence[Tuple[Tensor, Optional[Sequence[int]]]]) -> None:
        super().__init__()
        self.parts = nn.ModuleList(AnchorGrid(anchors, grid) for anchors, grid in parts)
        counts = [p.count for p in self.parts]
        self.starts = [sum(counts[:i]) for i in range(len(counts))]
        self.count = sum(counts)

    def forward(self, index: Optional[Tensor] = None) -> Tensor:
        """``(K, D)`` anchors at ``index`` (``(K,)``), or all of them when None."""
        if index is None:
            return torch.cat([part() for part in self.parts])
        rows = self.parts[0](index.clamp(max=self.parts[0].count - 1))
        for start, part in zip(self.starts[1:], self.parts[1:]):
            mine = part((index - start).clamp(0, part.count - 1))
            rows = torch.where((index >= start)[:, None], mine, rows)
        return rows


def head_anchors(head: nn.Module, featmap_sizes: Optional[Sequence[Sequence[int]]] = None
                 ) -> List[AnchorTable]:
    """The anchors of each level of ``head``, as its ``predict_by_feat`` makes them.

    Args:
        head: The head.
        featmap_sizes: ``(H, W)`` of each level's maps; SSN's head reads its
            own, set by its last ``forward``.

    Raises:
        DeployError: No sizes known.
    """
    generator, dim = head.prior_generator, head.box_code_size
    if isinstance(head, ShapeAwareHead):  # one level; a grid per task, concatenated
        if not getattr(head, 'featmap_sizes', None):
            raise DeployError('ShapeAwareHead knows its map sizes only after a forward; '
                              'run the head once before building its decoder')
        levels = generator.grid_anchors(head.featmap_sizes, device='cpu')
        return [AnchorTable([(task.reshape(-1, dim), size)
                             for task, size in zip(level, head.featmap_sizes)])
                for level in levels]
    if not featmap_sizes:
        raise DeployError(f'{type(head).__name__}: expected the (H, W) of each level\'s maps')
    levels = generator.grid_anchors([tuple(s) for s in featmap_sizes], device='cpu')
    return [AnchorTable([(level.reshape(-1, dim), size)])
            for level, size in zip(levels, featmap_sizes)]


class BoxDecoder(nn.Module):
    """The head's ``predict_by_feat`` for one sample, in exportable torch ops.

    Args:
        head: An mmdet3d ``Anchor3DHead``, ``FreeAnchor3DHead`` or
            ``ShapeAwareHead`` (its box coder and anchor generator are used).
        featmap_sizes: ``(H, W)`` of each level's maps (see :func:`head_anchors`).
        cfg: Test settings replacing the head's ``test_cfg``.

    Raises:
        DeployError: A head or setting that is not reproduced (see :func:`decode_settings`).

    Example:
        >>> from mmdet3d.registry import MODELS
        >>> from mmengine.config import ConfigDict
        >>> import mmdet3d.models  # noqa: F401 (registers the heads)
        >>> head = MODELS.build(dict(type='Anchor3DHead', num_classes=1, in_channels=8,
        ...     feat_channels=8, anchor_generator=dict(type='Anchor3DRangeGenerator',
        ...     ranges=[[0, -40, -1.8, 70, 40, -1.8]], sizes=[[3.9, 1.6, 1.56]]),
        ...     test_cfg=ConfigDict(use_rotate_nms=True, nms_pre=10, nms_thr=0.2,
        ...     score_thr=0.1, max_num=5)))
        >>> maps = [m.permute(0, 2, 3, 1) for kind in head([torch.randn(1, 8, 4, 4)]) for m in kind]
        >>> boxes, scores, labels = BoxDecoder(head, [(4, 4)])(*maps)
        >>> boxes.shape[1], boxes.shape[0] <= 5, labels.dtype
        (7, True, torch.int64)
    """

    def __init__(self, head: nn.Module, featmap_sizes: Optional[Sequence[Sequence[int]]] = None,
                 cfg: Optional[Any] = None) -> None:
        super().__init__()
        self.settings = decode_settings(head, cfg)
        self.anchors = nn.ModuleList(head_anchors(head, featmap_sizes))
        self.bbox_coder = head.bbox_coder
        self.levels = len(self.anchors)

    def forward(self, *maps: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Decodes the maps of one sample: :meth:`select` of the :meth:`candidates`.

        Args:
            maps: The head's maps as :class:`~mmregnet.deploy.DetectorGraph`
                gives them: every level's class scores, then box deltas, then
                direction scores; ``(1, H, W, A * C)`` channels-last, or SSN's
                ``(1, N, C)``.

        Returns:
            ``bboxes_3d`` ``(M, box_dim)`` (mmdet3d's LiDAR boxes),
            ``scores_3d`` ``(M,)``, ``labels_3d`` ``(M,)`` int64.
        """
        return self.select(*self.candidates(*maps))

    def candidates(self, *maps: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """The boxes that reach NMS: each level's ``nms_pre`` best anchors, decoded.

        Args:
            maps: As :meth:`forward` takes them.

        Returns:
            ``boxes`` ``(K, box_dim)``, their bird's-eye boxes ``(K, 5)``
            ``(x1, y1, x2, y2, yaw)``, class scores ``(K, classes)`` (no
            background) and direction bins ``(K,)``.
        """
        s = self.settings
        if len(maps) != 3 * self.levels:
            raise DeployError(f'expected {3 * self.levels} maps ({self.levels} levels of class '
                              f'scores, box deltas and directions), got {len(maps)}')
        boxes, scores, dirs = [], [], []
        for level in range(self.levels):
            cls = maps[level].reshape(-1, s.num_classes)
            delta = maps[self.levels + level].reshape(-1, s.box_dim)
            direction = maps[2 * self.levels + level].reshape(-1, 2)
            index = None
            if not s.sigmoid:
                cls = cls.softmax(-1)
            if 0 < s.nms_pre < self.anchors[level].count:
                # The sigmoid rises with the logit: the best logits are the best scores,
                # and only the kept anchors need scoring.
                best = (cls if s.sigmoid else cls[:, :-1]).max(1)[0]
                index = best.topk(s.nms_pre)[1]
                cls, delta, direction = cls[index], delta[index], direction[index]
            if s.sigmoid:
                cls = cls.sigmoid()
            boxes.append(self.bbox_coder.decode(self.anchors[level](index), delta))
            scores.append(cls)
            dirs.append(direction.argmax(1))
        boxes, scores, dirs = torch.cat(boxes), torch.cat(scores), torch.cat(dirs)
        x, y, w, h, yaw = boxes[:, [0, 1, 3, 4, 6]].unbind(1)  # xywhr2xyxyr of the BEV
        half_w, half_h = w / 2, h / 2
        bev = torch.stack([x - half_w, y - half_h, x + half_w, y + half_h, yaw], 1)
        return boxes, bev, scores if s.sigmoid else scores[:, :-1], dirs

    def select(self, boxes: Tensor, bev: Tensor, scores: Tensor,
               dirs: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """NMS of the :meth:`candidates` per class, ``max_num``, and the yaw's direction.

        Returns:
            As :meth:`forward`.
        """
        s = self.settings
        index, score, label = multiclass_nms(bev, scores, s.score_thr, s.nms_thr, s.max_num,
                                             s.rotated)
        boxes = boxes[index]
        rot = limit_period(boxes[:, 6] - s.dir_offset, s.dir_limit_offset, math.pi)
        rot = rot + s.dir_offset + math.pi * dirs[index].to(boxes.dtype)
        return torch.cat([boxes[:, :6], rot[:, None], boxes[:, 7:]], 1), score, label
