"""The synthetic LiDAR scenes and their nuScenes / Lyft files, checked against
hand-derived geometry and the datasets' own devkits (nuscenes-devkit,
lyft_dataset_sdk)."""
import dataclasses
import hashlib
import os

import numpy as np
import pytest

from mmregnet.synthetic import DatasetSpec, Options, generate, read_marker, write_dataset
from mmregnet.synthetic.lidar import LidarModel, box_hits, scan
from mmregnet.synthetic.objects import part_boxes
from mmregnet.synthetic.formats import NUSCENES_CLASSES
from mmregnet.synthetic.writer import make_token, visibility_token

TINY = Options(samples_per_scene=3, sweeps_per_sample=1, annotation_range=20.0,
               objects_per_scene=30, seed=3, azimuth_steps=360, max_range=40.0)


def _rays(directions):
    d = np.asarray(directions, dtype=float)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return d, np.arctan2(d[:, 1], d[:, 0])


def test_box_hits_front_face_and_misses():
    # A 4 x 2 x 2 box centred 10 m ahead: the +x ray enters its rear face at 8 m.
    box = np.array([10.0, 0.0, 0.0, 2.0, 1.0, 1.0, 0.0])
    dirs, az = _rays([[1, 0, 0], [-1, 0, 0], [1, 0.5, 0], [1, 0, 0.05]])
    rays, t = box_hits(dirs, az, box)
    assert rays.tolist() == [0, 3]
    assert t[0] == pytest.approx(8.0)
    assert t[1] == pytest.approx(8.0 / dirs[3, 0])


def test_box_hits_respects_yaw():
    # Rotated by 90 degrees the box is 2 m deep along x: entered at 9 m.
    box = np.array([10.0, 0.0, 0.0, 2.0, 1.0, 1.0, np.pi / 2])
    dirs, az = _rays([[1, 0, 0]])
    assert box_hits(dirs, az, box)[1][0] == pytest.approx(9.0)


def test_scan_ground_rings_and_occlusion():
    model = LidarModel(beams=4, min_elevation=-20, max_elevation=-5, azimuth_steps=90,
                       range_noise=0.0, dropout=0.0, max_range=100)
    rng = np.random.default_rng(0)
    empty = scan(model, np.zeros((0, 7)), np.zeros(0, int), np.zeros(0), 2.0, 0, rng)
    # Every ray hits the ground 2 m below: range = 2 / tan(-elevation) per ring.
    assert np.allclose(empty.points[:, 2], -2.0)
    elevation = np.deg2rad(np.linspace(-20, -5, 4))[empty.points[:, 4].astype(int)]
    assert np.allclose(np.hypot(empty.points[:, 0], empty.points[:, 1]),
                       2.0 / np.tan(-elevation), rtol=1e-5)
    # A wall in front of a car hides it: the car returns nothing, though it would alone.
    wall = [5.0, 0.0, 0.0, 0.2, 10.0, 5.0, 0.0]
    car = [15.0, 0.0, -1.0, 2.0, 1.0, 1.0, 0.0]
    hidden = scan(model, np.array([wall, car]), np.array([-1, 0]), np.array([40.0, 30.0]),
                  2.0, 1, rng)
    assert hidden.visible_hits[0] == 0 and hidden.unoccluded_hits[0] > 0
    alone = scan(model, np.array([car]), np.array([0]), np.array([30.0]), 2.0, 1, rng)
    assert alone.visible_hits[0] == alone.unoccluded_hits[0] > 0
    assert np.allclose(alone.points[alone.owner == 0, 0], 13.0)  # the face at 15 - 2 m


def test_parts_lie_inside_the_annotated_box():
    from mmregnet.synthetic.objects import SceneObject
    for cls in NUSCENES_CLASSES:
        obj = SceneObject(cls, cls.size, 0.0, 0.0, 0.0, 0.0)
        parts = part_boxes(obj)
        lo, hi = parts[:, :3] - parts[:, 3:], parts[:, :3] + parts[:, 3:]
        half = np.array(cls.size[:2]) / 2
        assert np.all(lo[:, :2] >= -half - 1e-9) and np.all(hi[:, :2] <= half + 1e-9)
        assert np.all(lo[:, 2] >= 0) and np.all(hi[:, 2] <= cls.size[2] + 1e-9)


def test_tokens_and_visibility_bins():
    assert make_token(1, 'a') == make_token(1, 'a') != make_token(2, 'a')
    assert len(make_token('x')) == 32 and int(make_token('x'), 16) >= 0
    assert [visibility_token(v, 10) for v in (0, 4, 5, 7, 9)] == ['1', '1', '2', '3', '4']
    assert visibility_token(0, 0) == '1'


def _digest(root):
    digest = hashlib.sha256()
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            path = os.path.join(folder, name)
            digest.update(os.path.relpath(path, root).encode())
            with open(path, 'rb') as f:
                digest.update(f.read())
    return digest.hexdigest()


@pytest.fixture(scope='module')
def tiny_nuscenes(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('nus') / 'nuscenes')
    write_dataset(DatasetSpec('nuscenes', TINY, dict(train=2, val=1)), root, progress=False)
    return root


def test_generation_is_deterministic(tiny_nuscenes, tmp_path):
    again = str(tmp_path / 'again')
    write_dataset(DatasetSpec('nuscenes', TINY, dict(train=2, val=1)), again, progress=False)
    assert _digest(again) == _digest(tiny_nuscenes)
    other = str(tmp_path / 'other')
    write_dataset(DatasetSpec('nuscenes', dataclasses.replace(TINY, seed=4),
                              dict(train=2, val=1)), other, progress=False)
    assert _digest(other) != _digest(tiny_nuscenes)


def test_nuscenes_devkit_reads_it(tiny_nuscenes):
    from nuscenes.nuscenes import NuScenes
    from nuscenes.utils.geometry_utils import points_in_box
    from nuscenes.utils.splits import create_splits_scenes
    nusc = NuScenes('v1.0-mini', tiny_nuscenes, verbose=False)
    splits = create_splits_scenes()
    names = [s['name'] for s in nusc.scene]
    assert names[:2] == splits['mini_train'][:2] and names[2] == splits['mini_val'][0]
    assert len(nusc.sample) == 3 * TINY.samples_per_scene
    assert len(nusc.sample_annotation) > 10
    for sample in nusc.sample[1:3]:
        path, boxes, _ = nusc.get_sample_data(sample['data']['LIDAR_TOP'])
        points = np.fromfile(path, dtype=np.float32).reshape(-1, 5)
        assert points.shape[0] > 1000 and set(np.unique(points[:, 4])) <= set(range(32))
        for box in boxes:
            # The devkit's own point-in-box test agrees with the stored point counts.
            ann = nusc.get('sample_annotation', box.token)
            inside = points_in_box(box, points[:, :3].T).sum()
            assert inside == ann['num_lidar_pts'], box.name
            assert np.abs(box.center[:2]).max() <= TINY.annotation_range
        lidar = nusc.get('sample_data', sample['data']['LIDAR_TOP'])
        sweep = nusc.get('sample_data', lidar['prev'])
        assert not sweep['is_key_frame'] and sweep['filename'].startswith('sweeps/LIDAR_TOP/')
        assert os.path.isfile(os.path.join(tiny_nuscenes, sweep['filename']))
    # Moving objects get the devkit's velocity from consecutive annotations.
    speeds = [np.hypot(*nusc.box_velocity(a['token'])[:2]) for a in nusc.sample_annotation]
    assert np.nanmax(speeds) > 0.5


def test_lyft_sdk_reads_it(tmp_path):
    from lyft_dataset_sdk.lyftdataset import LyftDataset
    root = str(tmp_path / 'lyft')
    write_dataset(DatasetSpec('lyft', TINY, dict(train=1, val=1, test=1)), root, progress=False)
    lyft = LyftDataset(os.path.join(root, 'v1.01-train'),
                       os.path.join(root, 'v1.01-train', 'v1.01-train'), verbose=False)
    with open(os.path.join(root, 'train.txt')) as f:
        train = f.read().split()
    with open(os.path.join(root, 'val.txt')) as f:
        val = f.read().split()
    assert sorted(train + val) == sorted(s['name'] for s in lyft.scene)
    assert {a['category_name'] for a in lyft.sample_annotation} <= {
        'car', 'truck', 'bus', 'emergency_vehicle', 'other_vehicle', 'motorcycle', 'bicycle',
        'pedestrian', 'animal'}
    path, boxes, _ = lyft.get_sample_data(lyft.sample[0]['data']['LIDAR_TOP'])
    assert path.is_file() and len(boxes) > 0
    test = LyftDataset(os.path.join(root, 'v1.01-test'),
                       os.path.join(root, 'v1.01-test', 'v1.01-test'), verbose=False)
    assert len(test.sample) == TINY.samples_per_scene and test.sample_annotation == []


def test_generate_is_all_or_nothing(tmp_path):
    root = str(tmp_path / 'nus')
    spec = DatasetSpec('nuscenes', Options(samples_per_scene=1, azimuth_steps=90), dict(train=1, val=1))
    assert generate(spec, root, progress=False, infos=False) is True
    assert read_marker(root)['options']['samples_per_scene'] == 1
    assert generate(spec, root, progress=False, infos=False) is False  # identical: reused
    other = DatasetSpec('nuscenes', Options(samples_per_scene=2, azimuth_steps=90),
                        dict(train=1, val=1))
    with pytest.raises(FileExistsError, match='not a synthetic dataset generated with'):
        generate(other, root, progress=False, infos=False)
    with pytest.raises(ValueError, match="'nuscenes' or 'lyft'"):
        generate(DatasetSpec('kitti'), str(tmp_path / 'kitti'), progress=False, infos=False)
    assert sorted(os.listdir(tmp_path)) == ['nus']  # the failed run left no staging folder
    with pytest.raises(ValueError, match='8 train and 2 val'):
        write_dataset(DatasetSpec('nuscenes', TINY, dict(train=9, val=1)), str(tmp_path / 'x'))
