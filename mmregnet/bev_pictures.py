"""Bird's-eye-view pictures of 3D boxes: points, ground truth and predictions.

Boxes follow mmdet3d's LiDAR convention: ``(x, y, z, x_size, y_size,
z_size, yaw)`` with ``x_size`` along the heading and ``yaw`` counter-clockwise
from +x. numpy only (matplotlib when a picture is drawn), so the light
runtime's ``mmregnet detect --png`` draws without the training stack.
"""
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .fileio import atomic_output


def bev_corners(boxes: np.ndarray) -> np.ndarray:
    """The four bird's-eye-view corners of each box.

    Args:
        boxes: (N, >=7) boxes ``x, y, z, x_size, y_size, z_size, yaw, ...``.

    Returns:
        (N, 4, 2) corners: front-left, rear-left, rear-right, front-right
        (front: half the ``x_size`` ahead along the heading).

    Example:
        >>> bev_corners(np.array([[0., 0., 0., 4., 2., 1., 0.]]))[0].tolist()
        [[2.0, 1.0], [-2.0, 1.0], [-2.0, -1.0], [2.0, -1.0]]
    """
    boxes = np.asarray(boxes, dtype=float)
    if boxes.size == 0:
        return np.zeros((0, 4, 2))
    unit = np.array([[0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5], [0.5, -0.5]])
    local = unit[None] * boxes[:, None, 3:5]
    cos, sin = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    rot = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)  # (N, 2, 2)
    return np.einsum('nij,nkj->nki', rot, local) + boxes[:, None, :2]


@dataclass
class BevSample:
    """One frame to draw.

    Attributes:
        points: (P, >=2) LiDAR points.
        gt_boxes: (G, >=7) ground-truth boxes.
        pred_boxes: (D, >=7) predicted boxes.
        pred_scores: (D,) their scores.
        title: Caption.
    """

    points: np.ndarray
    gt_boxes: np.ndarray
    pred_boxes: np.ndarray
    pred_scores: np.ndarray
    title: str = ''


def draw_bev(ax, sample: BevSample, limit: float, score_thr: float) -> None:
    """Draws points (grey), ground truth (green) and predictions (red) on ``ax``.

    Args:
        ax: A matplotlib Axes.
        sample: The frame.
        limit: Half-size of the square view (m).
        score_thr: Predictions scoring below this are not drawn.
    """
    points = sample.points
    inside = (np.abs(points[:, 0]) <= limit) & (np.abs(points[:, 1]) <= limit)
    ax.scatter(points[inside, 0], points[inside, 1], s=0.3, c='0.55', linewidths=0)
    for corners in bev_corners(sample.gt_boxes):
        ax.fill(corners[:, 0], corners[:, 1], fill=False, ec='tab:green', lw=1.4)
    keep = sample.pred_scores >= score_thr
    for corners, score in zip(bev_corners(sample.pred_boxes[keep]), sample.pred_scores[keep]):
        ax.fill(corners[:, 0], corners[:, 1], fill=False, ec='tab:red', lw=1.0)
        front = corners[[0, 3]].mean(0)  # heading tick: centre to the front edge
        centre = corners.mean(0)
        ax.plot([centre[0], front[0]], [centre[1], front[1]], c='tab:red', lw=0.8)
        ax.text(*corners[0], f'{score:.2f}', fontsize=5, color='tab:red')
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)
    ax.set_aspect('equal')
    ax.set_title(sample.title, fontsize=8)
    ax.tick_params(labelsize=6)


def save_bev_figure(samples: Sequence[BevSample], path: str, limit: float,
                    score_thr: float = 0.3, columns: int = 2) -> None:
    """Saves a grid of bird's-eye views as a PNG.

    Args:
        samples: The frames.
        path: Output ``.png`` path.
        limit: Half-size of each square view (m).
        score_thr: Predictions scoring below this are not drawn.
        columns: Views per row.
    """
    # A Figure with its own Agg canvas leaves the process's pyplot backend alone.
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: an extra, for pictures
    from matplotlib.figure import Figure  # lazy: as above
    if not samples:
        raise ValueError('no samples to draw')
    rows = (len(samples) + columns - 1) // columns
    fig = Figure(figsize=(5 * columns, 5 * rows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax, sample in zip(axes.ravel(), samples):
        draw_bev(ax, sample, limit, score_thr)
    for ax in axes.ravel()[len(samples):]:
        ax.axis('off')
    fig.suptitle(f'green: ground truth, red: predictions with score >= {score_thr}', fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_output(path, force=True) as tmp:
        fig.savefig(tmp, dpi=110, format=os.path.splitext(path)[1][1:] or 'png')
