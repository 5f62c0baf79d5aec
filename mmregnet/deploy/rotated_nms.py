"""mmdet3d's multi-class BEV NMS in exportable torch ops: ONNX ``Loop``, ``TopK``, ``NonZero``.

mmdet3d's ``box3d_multiclass_nms`` runs, class by class, mmcv's greedy NMS:
boxes sorted by score, each kept box suppressing the later ones whose IoU
with it reaches ``nms_thr`` (``>=`` for rotated boxes, ``nms_rotated``;
``>`` for axis-aligned ones, ``nms``). Here every class is done at once:

- the IoU is computed only for the pairs whose circumscribed circles meet
  (a pair further apart has IoU 0 and suppresses nothing, as ``nms_thr > 0``),
  from the same corners, centred as mmcv centres each pair, the overlap's
  area being that of one box's outline mapped into the other
  (:func:`area_in_box`);
- greedy NMS is the fixed point of ``keep[j] = valid[j] and no kept i before
  j overlaps j``: an iteration settles at least the next box in score order,
  and the one fixed point is the greedy answer. A ``Loop`` iterates it until
  nothing changes, usually a few times (the longest chain of suppressions).

Ties: mmdet3d orders equal scores by torch's CPU sort, which does not keep
equal keys in any fixed order; here the box found first (lower index) comes
first, ONNX ``TopK``'s rule. The IoU equals mmcv's to rounding, except where
mmcv's loses the overlap: a box and its exact twin given with width and height
swapped and the yaw turned by pi/2 (IoU 1; mmcv's nearly parallel edge
crossings give anything from 0 to 1).
"""
import warnings
from typing import Tuple

import torch
from torch import Tensor

#: Below this area mmcv gives a box IoU 0 (``box_iou_rotated_utils.hpp``).
_TINY_AREA = 1e-14
#: Circumscribed circles are widened by this factor and this many metres (and squared
#: distances by this many square metres) before pairs are looked for, against rounding.
_REACH = 1.0 + 1e-3
_SLACK = 0.05


def box_corners(boxes: Tensor) -> Tuple[Tensor, Tensor]:
    """Corners of rotated boxes, counter-clockwise in mmcv's order (``get_rotated_vertices``).

    Args:
        boxes: ``(P, 5)`` ``(x, y, w, h, angle)``.

    Returns:
        ``(P, 4)`` x and ``(P, 4)`` y of the corners.
    """
    x, y, w, h, angle = boxes.unbind(-1)
    cos, sin = torch.cos(angle) * 0.5, torch.sin(angle) * 0.5
    x0, y0 = x - sin * h - cos * w, y + cos * h - sin * w
    x1, y1 = x + sin * h - cos * w, y - cos * h - sin * w
    return (torch.stack([x0, x1, 2 * x - x0, 2 * x - x1], 1),
            torch.stack([y0, y1, 2 * y - y0, 2 * y - y1], 1))


def _next(t: Tensor) -> Tensor:
    """Each column's successor around the ring of columns."""
    return torch.cat([t[:, 1:], t[:, :1]], 1)


def _sort4(a: Tensor, b: Tensor, c: Tensor, d: Tensor) -> Tuple[Tensor, ...]:
    """Four tensors sorted elementwise (a sorting network of five exchanges)."""
    a, b = torch.minimum(a, b), torch.maximum(a, b)
    c, d = torch.minimum(c, d), torch.maximum(c, d)
    a, c = torch.minimum(a, c), torch.maximum(a, c)
    b, d = torch.minimum(b, d), torch.maximum(b, d)
    return a, torch.minimum(b, c), torch.maximum(b, c), d


def _crossing(p: Tensor, step: Tensor, bound: Tensor) -> Tensor:
    """Where along each edge ``p + t step`` (``t`` in [0, 1]) the coordinate meets ``bound``."""
    flat = step == 0
    t = (bound - p) / torch.where(flat, torch.ones_like(step), step)
    return torch.where(flat, torch.zeros_like(t), t).clamp(0, 1)


def area_in_box(u: Tensor, v: Tensor, half_w: Tensor, half_h: Tensor) -> Tensor:
    """Area of a counter-clockwise polygon's overlap with the box ``|u| <= half_w, |v| <= half_h``.

    The polygon's outline is mapped onto its nearest points in the box; the
    image is a closed path that winds once around every point of the overlap
    and around no other, so its shoelace sum is the overlap's area. Each edge
    maps piecewise linearly, bending where it crosses the lines of the box's
    sides: those four points, sorted along the edge, and its start make five
    points per edge. No point is dropped or sorted around the polygon, so
    nearly parallel or coincident edges need no special case.

    Args:
        u: ``(P, K)`` x of the corners in the box's frame.
        v: ``(P, K)`` y of the corners.
        half_w: ``(P, 1)`` half the box's width (along u).
        half_h: ``(P, 1)`` half its height.

    Returns:
        ``(P,)`` areas.
    """
    du, dv = _next(u) - u, _next(v) - v
    cuts = _sort4(_crossing(u, du, -half_w), _crossing(u, du, half_w),
                  _crossing(v, dv, -half_h), _crossing(v, dv, half_h))
    ts = [torch.zeros_like(u)] + list(cuts)
    pu = torch.stack([u + du * t for t in ts], 2).flatten(1)  # edge by edge, in order
    pv = torch.stack([v + dv * t for t in ts], 2).flatten(1)
    pu = torch.maximum(torch.minimum(pu, half_w), -half_w)
    pv = torch.maximum(torch.minimum(pv, half_h), -half_h)
    return (pu * _next(pv) - _next(pu) * pv).sum(1).abs() * 0.5


def rotated_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of rotated boxes pair by pair, as mmcv's ``nms_rotated`` computes it.

    Args:
        a: ``(P, 5)`` ``(x, y, w, h, angle)``.
        b: ``(P, 5)``, the other box of each pair.

    Returns:
        ``(P,)`` intersection over union, 0 where a box has no area.
    """
    xa, ya, wa, ha, ra = a.unbind(1)
    xb, yb, wb, hb, rb = b.unbind(1)
    mid_x, mid_y = (xa + xb) / 2, (ya + yb) / 2  # mmcv centres each pair for precision
    xs, ys = box_corners(torch.stack([xa - mid_x, ya - mid_y, wa, ha, ra], 1))
    dx, dy = xs - (xb - mid_x)[:, None], ys - (yb - mid_y)[:, None]
    cos, sin = torch.cos(rb)[:, None], torch.sin(rb)[:, None]
    inter = area_in_box(dx * cos + dy * sin, dy * cos - dx * sin, wb[:, None] / 2,
                        hb[:, None] / 2)
    area_a, area_b = wa * ha, wb * hb
    iou = inter / (area_a + area_b - inter)
    flat = (area_a < _TINY_AREA) | (area_b < _TINY_AREA)
    return torch.where(flat, torch.zeros_like(iou), iou)


def aligned_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of axis-aligned ``(x1, y1, x2, y2)`` boxes pair by pair, as mmcv's ``nms``."""
    w = (torch.minimum(a[:, 2], b[:, 2]) - torch.maximum(a[:, 0], b[:, 0])).clamp(min=0)
    h = (torch.minimum(a[:, 3], b[:, 3]) - torch.maximum(a[:, 1], b[:, 1])).clamp(min=0)
    inter = w * h
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a + area_b - inter)


def near_pairs(centres: Tensor, radii: Tensor) -> Tuple[Tensor, Tensor]:
    """Index pairs ``i < j`` whose circles (``(V, 2)`` centres, ``(V,)`` radii) may meet.

    One matrix product gives ``2 (c_i . c_j + r_i r_j) - q_i - q_j`` with
    ``q = |c|^2 - r^2``, which is ``(r_i + r_j)^2 - |c_i - c_j|^2``: the pairs
    are found in one pass over ``V x V`` values. Rounding (coordinates are
    centred first) is covered by a slack that only admits more pairs.
    """
    centres = centres - centres.mean(0, keepdim=True)
    radii = radii * _REACH + _SLACK
    q = (centres * centres).sum(1) - radii * radii
    ones = torch.ones_like(q)
    rows = torch.stack([centres[:, 0], centres[:, 1], radii, q, ones], 1)
    cols = torch.stack([2 * centres[:, 0], 2 * centres[:, 1], 2 * radii, -ones, -q], 1)
    pairs = (rows @ cols.t() >= -_SLACK).nonzero()
    i, j = pairs[:, 0], pairs[:, 1]
    upper = i < j
    return i[upper], j[upper]


def _settle(valid: Tensor, src: Tensor, dst: Tensor) -> Tensor:
    """Greedy NMS as a fixed point: the ``valid`` boxes no kept box suppresses.

    Args:
        valid: ``(N,)`` bool, the candidates (of every class, flat).
        src: ``(E,)`` the box of each edge that comes first in its class's order.
        dst: ``(E,)`` the later box it overlaps, which it suppresses if kept.

    Returns:
        ``(N,)`` bool, the boxes greedy NMS keeps.
    """
    keep = valid
    changed = torch.ones((), dtype=torch.bool)
    while bool(changed):
        hit = keep.index_select(0, src).to(torch.float32)
        hits = torch.zeros(keep.shape, dtype=torch.float32).scatter_reduce(0, dst, hit, 'amax')
        settled = valid & (hits < 0.5)
        changed = (settled != keep).any()
        keep = settled
    return keep


with warnings.catch_warnings():
    # Deprecated in torch 2.x, but the TorchScript-based ONNX exporter that mmregnet uses
    # (dynamo=False) turns only a scripted while-loop into an ONNX Loop.
    warnings.filterwarnings('ignore', category=FutureWarning)
    settle = torch.jit.script(_settle)


def multiclass_nms(bev: Tensor, scores: Tensor, score_thr: float, nms_thr: float,
                   max_num: int, rotated: bool = True) -> Tuple[Tensor, Tensor, Tensor]:
    """mmdet3d's ``box3d_multiclass_nms`` (``nms_bev`` or ``nms_normal_bev`` per class).

    Args:
        bev: ``(K, 5)`` ``(x1, y1, x2, y2, yaw)``, mmdet3d's ``xywhr2xyxyr`` of the boxes.
        scores: ``(K, C)`` the scores of the foreground classes.
        score_thr: A box is a candidate of a class whose score is above this.
        nms_thr: IoU at which (``>=`` rotated, ``>`` axis-aligned) a box suppresses another.
        max_num: Most boxes returned; beyond it, the best by score.
        rotated: Rotated IoU (``use_rotate_nms``) or axis-aligned IoU of the first four.

    Returns:
        ``(index, score, label)``, each ``(M,)``: the box (row of ``bev``), its
        score and class, class by class, best first within a class (by score
        alone when more than ``max_num`` were kept).
    """
    valid = scores > score_thr
    cand = valid.any(1).nonzero()[:, 0]
    scores, valid, bev = scores[cand], valid[cand], bev[cand]
    num = cand.shape[0]
    if rotated:  # nms_bev turns the xyxyr boxes back into xywhr
        x1, y1, x2, y2, yaw = bev.unbind(1)
        boxes = torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1, yaw], 1)
        i, j = near_pairs(boxes[:, :2], 0.5 * torch.sqrt(boxes[:, 2] ** 2 + boxes[:, 3] ** 2))
        iou = rotated_iou(boxes[i], boxes[j])
        overlap = iou >= nms_thr
    else:
        half = (bev[:, 2:4] - bev[:, :2]) / 2
        i, j = near_pairs(bev[:, :2] + half, torch.sqrt((half ** 2).sum(1)))
        overlap = aligned_iou(bev[i, :4], bev[j, :4]) > nms_thr
    i, j = i[overlap], j[overlap]
    first = scores[i] >= scores[j]  # (E, C): who comes first in each class's order
    both = (valid[i] & valid[j]).t()
    src = torch.where(first, i[:, None], j[:, None]).t()
    dst = torch.where(first, j[:, None], i[:, None]).t()
    offset = torch.arange(scores.shape[1], device=bev.device)[:, None] * num
    keep = settle(valid.t().reshape(-1), (src + offset)[both], (dst + offset)[both])
    # Gathered back to (C, V), not reshaped: an ONNX Reshape reads a 0 in its shape as
    # "keep this dimension", which a frame with no candidate would hit.
    keep = keep[offset + torch.arange(num, device=bev.device)]
    by_class = scores.t()
    ranked = torch.where(keep, by_class, torch.full_like(by_class, float('-inf')))
    order = ranked.topk(num, dim=1)[1]
    slot = keep.gather(1, order).reshape(-1).nonzero()[:, 0]  # class-major, best first
    classes = torch.arange(scores.shape[1], device=bev.device)[:, None].expand_as(order)
    label = classes.reshape(-1)[slot]
    index = order.reshape(-1)[slot]
    score = by_class.gather(1, order).reshape(-1)[slot]
    position = torch.arange(slot.shape[0], device=bev.device)
    over = (position >= max_num).any()
    key = torch.where(over, score, -position.to(score.dtype))
    pick = key.topk(slot.shape[0])[1][:max_num]
    return cand[index[pick]], score[pick], label[pick]
