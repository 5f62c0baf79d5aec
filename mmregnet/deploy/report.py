"""Point clouds from ``.bin`` files; detections as a person reads them: table, JSON, picture.

numpy only (matplotlib for the picture, imported when one is drawn), like
the runtime, so ``mmregnet detect`` runs where only ``mmregnet[runtime]``
is installed.
"""
import os
from typing import Any, Dict, List, Optional

import numpy as np

from ..errors import InputError
from ..bev_pictures import BevSample, draw_bev
from .runtime import Detections

#: The values of a box, in mmdet3d's LiDAR layout (``vx, vy`` where there are 9).
BOX_FIELDS = ('x', 'y', 'z', 'x_size', 'y_size', 'z_size', 'yaw', 'vx', 'vy')


def read_cloud(path: str, dims: int, use_dims: Optional[int] = None) -> np.ndarray:
    """The points of a KITTI/nuScenes-style ``.bin`` file: float32 values, ``dims`` per point.

    Args:
        path: The file.
        dims: Values stored per point (nuScenes: 5, KITTI: 4).
        use_dims: Values kept per point, the first ones (default: all).

    Returns:
        ``(N, use_dims)`` float32.

    Raises:
        InputError: Bad ``dims``/``use_dims``, or a file size that is not a
            whole number of points.
        OSError: The file cannot be read.

    Example:
        >>> import tempfile
        >>> with tempfile.NamedTemporaryFile(suffix='.bin') as f:
        ...     _ = f.write(np.arange(10, dtype=np.float32).tobytes()); f.flush()
        ...     read_cloud(f.name, dims=5, use_dims=4).tolist()
        [[0.0, 1.0, 2.0, 3.0], [5.0, 6.0, 7.0, 8.0]]
    """
    use_dims = dims if use_dims is None else use_dims
    if dims < 3:
        raise InputError(f'--dims must be >= 3 (x, y, z and more per point), got {dims}')
    if not 3 <= use_dims <= dims:
        raise InputError(f'--use-dims must be in 3..{dims} (--dims), got {use_dims}')
    size = os.path.getsize(path)
    if size % (4 * dims):
        raise InputError(f'{path}: {size} bytes is not a whole number of points of {dims} '
                         f'float32 values ({4 * dims} bytes each); is --dims {dims} right?')
    points = np.fromfile(path, dtype=np.float32).reshape(-1, dims)
    return np.ascontiguousarray(points[:, :use_dims])


def box_fields(box_dim: int) -> List[str]:
    """The names of the ``box_dim`` values of a box."""
    return list(BOX_FIELDS[:box_dim])


def detections_table(found: Detections) -> str:
    """The detections as a text table: class, score, centre, size, yaw (and velocity)."""
    fields = box_fields(found.boxes.shape[1])
    width = max([5] + [len(n) for n in found.names])
    head = f'{"#":>4}  {"class":<{width}} {"score":>6} ' + ' '.join(f'{f:>8}' for f in fields)
    rows = [f'{i:>4}  {name:<{width}} {score:6.3f} ' + ' '.join(f'{v:8.2f}' for v in box)
            for i, (name, score, box) in enumerate(zip(found.names, found.scores, found.boxes))]
    return '\n'.join([head] + rows) + '\n'


def detections_json(found: Detections, **about: Any) -> Dict[str, Any]:
    """The detections as a JSON-able dict: ``about``, the box layout and one record per box."""
    return dict(about, box_layout=box_fields(found.boxes.shape[1]), count=len(found),
                detections=found.to_records())


def save_bev_png(path: str, points: np.ndarray, found: Detections, title: str = '',
                 limit: Optional[float] = None) -> None:
    """Draws the points and boxes from above into the PNG file ``path`` (needs matplotlib).

    Args:
        path: The file to write (any name; the format is PNG).
        points: ``(N, >=2)`` the cloud.
        found: Its detections.
        title: A caption.
        limit: Half the side of the square view in metres (default: the
            farthest box or point, at most 80 m).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # optional: on use
    from matplotlib.figure import Figure  # optional: on use
    if limit is None:
        reach = [np.abs(points[:, :2]).max() if len(points) else 0.0,
                 np.abs(found.boxes[:, :2]).max() + 5 if len(found) else 0.0]
        limit = float(min(max(reach + [10.0]), 80.0))
    fig = Figure(figsize=(7, 7), dpi=110, layout='constrained')
    FigureCanvasAgg(fig)
    sample = BevSample(points, np.zeros((0, 7)), found.boxes, found.scores, title)
    draw_bev(fig.add_subplot(), sample, limit, score_thr=0.0)
    fig.savefig(path, format='png')
