"""The max or sum of each group of consecutive rows, with gathers only: exact and thread-safe.

A pillar's feature is the max over its points' rows. ONNX's scatter with a
reduction would take it in one operator, but ONNX Runtime 1.31 runs
``ScatterND``'s reductions on several threads without guarding repeated
indices, so some updates are lost (``ScatterElements`` is exact but runs
element by element, tens of milliseconds on a frame). Rows grouped by pillar
instead halve their groups ``ceil(log2(max_points))`` times: each step keeps
the rows at even places of their group, each combined with the row after it
where the group has one. The work is that of one pass over the rows, in
``Gather``, ``Max`` and ``Add`` operators.

Example:
    >>> group = torch.tensor([0, 0, 0, 1, 2, 2])
    >>> place = torch.tensor([0, 1, 2, 0, 0, 1])
    >>> rows = torch.tensor([[1.], [5.], [2.], [7.], [3.], [4.]])
    >>> plan = halving_plan(group, place, max_points=3)
    >>> reduce_groups(rows, plan, 'max').view(-1).tolist()
    [5.0, 7.0, 4.0]
    >>> reduce_groups(rows, plan, 'add').view(-1).tolist()
    [8.0, 7.0, 7.0]
"""
from typing import List, NamedTuple

import torch
from torch import Tensor


class Halving(NamedTuple):
    """One step of a :func:`halving_plan`.

    Attributes:
        left: ``(K',)`` rows at even places, in order.
        right: ``(K',)`` the row after each in its group, or itself where there is none.
        paired: ``(K',)`` whether there is one.
    """

    left: Tensor
    right: Tensor
    paired: Tensor


def halving_plan(group: Tensor, place: Tensor, max_points: int) -> List[Halving]:
    """The steps that reduce rows grouped by ``group`` to one row per group.

    Args:
        group: ``(K,)`` int64 each row's group, nondecreasing; every group
            in ``0 .. G - 1`` has at least one row.
        place: ``(K,)`` int64 each row's place in its group: ``0, 1, ...``.
        max_points: The most rows of a group.

    Returns:
        ``ceil(log2(max_points))`` steps for :func:`reduce_groups`.
    """
    plan = []
    for _ in range((max(max_points, 1) - 1).bit_length()):
        # The row after each, or -1 past the end (the slices keep zero rows valid).
        after = torch.cat([group[1:], group[:1] * 0 - 1])
        left = (place % 2 == 0).nonzero()[:, 0]
        paired = (after == group).index_select(0, left)
        plan.append(Halving(left, left + paired.long(), paired))
        group = group.index_select(0, left)
        place = torch.div(place.index_select(0, left), 2, rounding_mode='trunc')
    return plan


def reduce_groups(rows: Tensor, plan: List[Halving], op: str) -> Tensor:
    """The ``'max'`` or ``'add'`` of each group of ``rows``: ``(G, C)``, groups in order.

    Args:
        rows: ``(K, C)`` grouped as the plan's ``group``.
        plan: :func:`halving_plan` of the grouping.
        op: ``'max'`` or ``'add'``.
    """
    for step in plan:
        left, right = rows.index_select(0, step.left), rows.index_select(0, step.right)
        if op == 'max':
            rows = torch.maximum(left, right)
        else:
            rows = left + right * step.paired.to(rows.dtype).view(-1, 1)
    return rows
