"""Small generated detector inputs: a point cloud with 3D boxes, an image with 2D boxes."""
import numpy as np
import torch


def _rng(seed):
    return np.random.default_rng(seed)


def point_cloud_batch(cfg, num_boxes=4, points_per_box=60, background=2000, seed=0):
    """One LiDAR sample inside ``cfg``'s point-cloud range, with boxes on the ground.

    Args:
        cfg: An mmdet3d detector config (read for the range, classes and box code size).

    Returns:
        A data batch as mmdet3d's data loader yields it: ``dict(inputs=dict(points=[N x C]),
        data_samples=[Det3DDataSample])``, points being x, y, z and ``C - 3`` features
        (C = the voxel encoder's ``in_channels``: the loaders' output width).
    """
    from mmdet3d.structures import Det3DDataSample, LiDARInstance3DBoxes
    from mmengine.structures import InstanceData
    rng = _rng(seed)
    x0, y0, z0, x1, y1, z1 = cfg.model.data_preprocessor.voxel_layer.point_cloud_range
    head = cfg.model.pts_bbox_head
    code_size = head.bbox_coder.get('code_size', 7)
    features = cfg.model.pts_voxel_encoder.in_channels - 3
    centers = rng.uniform([x0 * 0.6, y0 * 0.6], [x1 * 0.6, y1 * 0.6], size=(num_boxes, 2))
    sizes = rng.uniform([3.5, 1.6, 1.4], [5.0, 2.1, 1.9], size=(num_boxes, 3))
    yaw = rng.uniform(-np.pi, np.pi, size=(num_boxes, 1))
    bottom_z = np.full((num_boxes, 1), -1.8)
    boxes = np.concatenate([centers, bottom_z, sizes, yaw], axis=1)
    if code_size == 9:
        boxes = np.concatenate([boxes, rng.normal(size=(num_boxes, 2))], axis=1)
    clusters = [np.column_stack([
        rng.uniform(-0.5, 0.5, (points_per_box, 3)) * b[3:6] + b[:3] + [0, 0, b[5] / 2],
        rng.uniform(0, 1, (points_per_box, features))]) for b in boxes]
    ground = np.column_stack([rng.uniform([x0, y0, -1.9], [x1, y1, -1.7], (background, 3)),
                              rng.uniform(0, 1, (background, features))])
    points = torch.from_numpy(np.concatenate([ground] + clusters)).float()
    sample = Det3DDataSample(metainfo=dict(box_type_3d=LiDARInstance3DBoxes,
                                           sample_idx=0, lidar_path='generated'))
    sample.gt_instances_3d = InstanceData(
        bboxes_3d=LiDARInstance3DBoxes(torch.from_numpy(boxes).float(), box_dim=code_size),
        labels_3d=torch.from_numpy(rng.integers(0, head.num_classes, num_boxes)))
    return dict(inputs=dict(points=[points]), data_samples=[sample])


def image_batch(with_masks, size=(128, 160), num_boxes=3, seed=0):
    """One BGR image with boxes (and bitmap masks), as mmdet's data loader yields it."""
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    rng = _rng(seed)
    h, w = size
    xy = rng.uniform(0, [w * 0.6, h * 0.6], size=(num_boxes, 2))
    wh = rng.uniform(16, 48, size=(num_boxes, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1)
    sample = DetDataSample(metainfo=dict(img_shape=size, ori_shape=size, pad_shape=size,
                                         scale_factor=(1.0, 1.0), batch_input_shape=size))
    instances = InstanceData(bboxes=torch.from_numpy(boxes).float(),
                             labels=torch.from_numpy(rng.integers(0, 80, num_boxes)))
    if with_masks:
        masks = np.zeros((num_boxes, h, w), dtype=np.uint8)
        for m, (a, b, c, d) in zip(masks, boxes.astype(int)):
            m[b:d, a:c] = 1
        instances.masks = BitmapMasks(masks, h, w)
    sample.gt_instances = instances
    image = torch.from_numpy(rng.integers(0, 255, (3, h, w), dtype=np.uint8))
    return dict(inputs=[image], data_samples=[sample])


def shrink_range(cfg, grid=32):
    """Cuts a PointPillars config's point-cloud range to a ``grid`` x ``grid`` BEV canvas, in place.

    Only the range changes (voxel size, layers, channels and anchors per cell
    stay the config's), so the network is the config's on a smaller pseudo
    image: a full 400 x 400 nuScenes canvas takes seconds per forward here.
    The anchor ranges scale with the point-cloud range.

    Returns:
        ``cfg``.
    """
    model = cfg.model
    layer = model.data_preprocessor.voxel_layer
    x0, y0, z0, x1, y1, z1 = layer.point_cloud_range
    vx, vy = layer.voxel_size[:2]
    if round((x1 - x0) / vx) <= grid:
        return cfg
    half_x, half_y = grid * vx / 2, grid * vy / 2
    new_range = [-half_x, -half_y, z0, half_x, half_y, z1]
    layer.point_cloud_range = new_range
    model.pts_voxel_encoder.point_cloud_range = new_range
    model.pts_middle_encoder.output_shape = [grid, grid]
    anchors = model.pts_bbox_head.anchor_generator
    sx, sy = 2 * half_x / (x1 - x0), 2 * half_y / (y1 - y0)
    anchors.ranges = [[r[0] * sx, r[1] * sy, r[2], r[3] * sx, r[4] * sy, r[5]]
                      for r in anchors.ranges]
    return cfg
