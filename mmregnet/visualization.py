"""Frames of a dataset split with their dumped predictions, for bird's-eye-view pictures.

Predictions come from ``tools/test.py --out`` (mmengine's DumpResults), ground
truth and point files from the info file; both pickles are read under the
project's unpickling policy (:func:`mmregnet.checkpoint.pickles.load_pickle`),
never run. :mod:`mmregnet.bev_pictures` draws them.
"""
import os
from typing import List, Optional

import numpy as np

from .bev_pictures import BevSample
from .checkpoint.pickles import load_pickle
from .deploy.report import read_cloud


def load_bev_samples(info_file: str, predictions_file: str, lidar_dir: str,
                     count: int = 4, load_dim: int = 5) -> List[BevSample]:
    """Frames to draw (:mod:`mmregnet.bev_pictures`) from an info file and dumped predictions.

    Args:
        info_file: mmdet3d v2 info ``.pkl`` (ground truth and point file names).
        predictions_file: ``tools/test.py --out`` dump of the same split.
        lidar_dir: Folder of the key-frame point files.
        count: Frames to take, spread evenly over the split.
        load_dim: Floats per point in the point files.

    Returns:
        The frames.
    """
    from mmdet3d.structures import (Box3DMode, CameraInstance3DBoxes,  # an optional extra
                                    DepthInstance3DBoxes, LiDARInstance3DBoxes)
    infos = load_pickle(info_file)['data_list']
    box_types = (Box3DMode, CameraInstance3DBoxes, DepthInstance3DBoxes, LiDARInstance3DBoxes)
    predictions = {int(p['sample_idx']): p['pred_instances_3d']
                   for p in load_pickle(predictions_file, allow=box_types)}
    picks = np.linspace(0, len(infos) - 1, min(count, len(infos))).round().astype(int)
    samples = []
    for index in picks:
        info = infos[index]
        path = os.path.join(lidar_dir, info['lidar_points']['lidar_path'])
        points = read_cloud(path, load_dim)
        gt = np.array([i['bbox_3d'] for i in info.get('instances', [])], dtype=float)
        pred: Optional[dict] = predictions.get(int(info['sample_idx']))
        boxes = pred['bboxes_3d'].tensor.numpy() if pred else np.zeros((0, 7))
        scores = pred['scores_3d'].numpy() if pred else np.zeros(0)
        samples.append(BevSample(points, gt.reshape(-1, 7), boxes, scores,
                                 f'sample {info["sample_idx"]}: {len(gt)} objects'))
    return samples
