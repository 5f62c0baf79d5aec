"""mmdet3d's own converter (create_data.py from its wheel) on the synthetic datasets, and
mmdet3d's NuScenesMetric / LyftMetric (the official devkit evaluations) on them: the
ground truth, fed back as predictions, scores a perfect AP."""
import json
import os

import mmengine
import numpy as np
import pytest
import torch
from pyquaternion import Quaternion

from mmregnet.synthetic import DatasetSpec, Options, generate

pytestmark = pytest.mark.slow  # mmdet3d's create_data.py and the devkits' metrics

TINY = Options(samples_per_scene=3, sweeps_per_sample=1, annotation_range=15.0,
               objects_per_scene=30, seed=5, azimuth_steps=360, max_range=30.0)
NUS_CLASSES = ('car', 'truck', 'trailer', 'bus', 'construction_vehicle', 'bicycle',
               'motorcycle', 'pedestrian', 'traffic_cone', 'barrier')
LYFT_CLASSES = ('car', 'truck', 'bus', 'emergency_vehicle', 'other_vehicle', 'motorcycle',
                'bicycle', 'pedestrian', 'animal')


@pytest.fixture(scope='module')
def nus_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('infos') / 'nuscenes')
    generate(DatasetSpec('nuscenes', TINY, dict(train=2, val=1), max_sweeps=1), root,
             progress=False)
    return root


@pytest.fixture(scope='module')
def lyft_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('infos') / 'lyft')
    generate(DatasetSpec('lyft', TINY, dict(train=1, val=1, test=1), max_sweeps=2), root,
             progress=False)
    return root


def _table(root, name):
    with open(os.path.join(root, 'v1.0-mini', f'{name}.json')) as f:
        return {r['token']: r for r in json.load(f)}


def _global_to_lidar(pose, calib):
    """4x4 transform from the tables' records, independent of mmdet3d and the devkit."""
    def matrix(record):
        m = np.eye(4)
        m[:3, :3] = Quaternion(record['rotation']).rotation_matrix
        m[:3, 3] = record['translation']
        return m
    return np.linalg.inv(matrix(pose) @ matrix(calib))


def test_nuscenes_infos_match_the_tables(nus_root):
    train = mmengine.load(os.path.join(nus_root, 'nuscenes_infos_train.pkl'))
    val = mmengine.load(os.path.join(nus_root, 'nuscenes_infos_val.pkl'))
    assert train['metainfo']['version'] == 'v1.0-mini'
    assert len(train['data_list']) == 2 * TINY.samples_per_scene
    assert len(val['data_list']) == TINY.samples_per_scene
    samples, data = _table(nus_root, 'sample'), _table(nus_root, 'sample_data')
    anns, poses, calibs = (_table(nus_root, n) for n in
                           ('sample_annotation', 'ego_pose', 'calibrated_sensor'))
    info = train['data_list'][1]
    lidar = next(d for d in data.values() if d['sample_token'] == info['token']
                 and d['is_key_frame'] and d['filename'].startswith('samples/LIDAR_TOP'))
    assert info['lidar_points']['lidar_path'] == os.path.basename(lidar['filename'])
    assert info['timestamp'] == pytest.approx(samples[info['token']]['timestamp'] / 1e6)
    assert len(info['lidar_sweeps']) == 1
    to_lidar = _global_to_lidar(poses[lidar['ego_pose_token']],
                                calibs[lidar['calibrated_sensor_token']])
    sample_anns = [a for a in anns.values() if a['sample_token'] == info['token']]
    assert len(info['instances']) == len(sample_anns) > 0
    expected = []
    for ann in sample_anns:
        centre = to_lidar[:3, :3] @ ann['translation'] + to_lidar[:3, 3]
        heading = to_lidar[:3, :3] @ Quaternion(ann['rotation']).rotation_matrix[:, 0]
        w, length, h = ann['size']
        expected.append([*centre, length, w, h, np.arctan2(heading[1], heading[0])])
    got = np.array(sorted(i['bbox_3d'] for i in info['instances']))
    np.testing.assert_allclose(got, np.array(sorted(expected)), atol=1e-4)


def _gt_as_predictions(data_list, box_dim):
    from mmdet3d.structures import LiDARInstance3DBoxes
    results = []
    for info in data_list:
        kept = [i for i in info.get('instances', [])
                if i['bbox_label_3d'] >= 0 and i.get('num_lidar_pts', 1) > 0]
        boxes = [i['bbox_3d'] + (i['velocity'] if box_dim == 9 else []) for i in kept]
        boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, box_dim)
        results.append(dict(sample_idx=info['sample_idx'], pred_instances=dict(),
                            pred_instances_3d=dict(
                                bboxes_3d=LiDARInstance3DBoxes(boxes, box_dim=box_dim,
                                                               origin=(0.5, 0.5, 0.5)),
                                scores_3d=torch.ones(len(kept)),
                                labels_3d=torch.tensor([i['bbox_label_3d'] for i in kept]))))
    return results


def test_nuscenes_metric_scores_ground_truth_perfectly(nus_root):
    from mmdet3d.evaluation.metrics import NuScenesMetric
    ann_file = os.path.join(nus_root, 'nuscenes_infos_val.pkl')
    infos = mmengine.load(ann_file)['data_list']
    metric = NuScenesMetric(data_root=nus_root, ann_file=ann_file)
    metric.dataset_meta = dict(classes=NUS_CLASSES, version='v1.0-mini')
    metrics = metric.compute_metrics(_gt_as_predictions(infos, 9))
    prefix = 'pred_instances_3d_NuScenes/'
    present = {NUS_CLASSES[i['bbox_label_3d']] for info in infos
               for i in info['instances'] if i['num_lidar_pts'] > 0}
    assert len(present) >= 4
    for name in present:
        assert metrics[f'{prefix}{name}_AP_dist_0.5'] == pytest.approx(1.0), name
        assert metrics[f'{prefix}{name}_trans_err'] < 1e-3
        assert metrics[f'{prefix}{name}_scale_err'] < 1e-3
    # The devkit averages over all 10 classes; absent ones score 0.
    assert metrics[f'{prefix}mAP'] == pytest.approx(len(present) / len(NUS_CLASSES))


def test_lyft_infos_and_metric(lyft_root):
    from mmdet3d.evaluation.metrics import LyftMetric
    for split in ('train', 'val', 'test'):
        infos = mmengine.load(os.path.join(lyft_root, f'lyft_infos_{split}.pkl'))
        assert infos['metainfo']['version'] == ('v1.01-test' if split == 'test' else 'v1.01-train')
        assert len(infos['data_list']) == TINY.samples_per_scene
    val = mmengine.load(os.path.join(lyft_root, 'lyft_infos_val.pkl'))['data_list']
    assert len(val[-1]['lidar_sweeps']) == 2  # earlier key frames serve as sweeps in Lyft
    metric = LyftMetric(data_root=lyft_root, ann_file='lyft_infos_val.pkl')
    metric.dataset_meta = dict(classes=LYFT_CLASSES, version='v1.01-train')
    metrics = metric.compute_metrics(_gt_as_predictions(val, 7))
    assert metrics['pred_instances_3d_Lyft/mAP'] == pytest.approx(1.0)
