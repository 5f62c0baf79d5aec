"""Writes simulated scenes as the nuScenes-schema tables plus LiDAR and image files."""
import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np
from pyquaternion import Quaternion

from .formats import CAMERAS, DatasetFormat
from .lidar import LidarModel, count_points_in_boxes
from .options import Options
from .scene import Scene, make_scene, rotation_z, yaw_quaternion

TABLES = ('category', 'attribute', 'visibility', 'instance', 'sensor', 'calibrated_sensor',
          'ego_pose', 'log', 'scene', 'sample', 'sample_data', 'sample_annotation', 'map')
# nuScenes visibility levels: the visible fraction of an object, in 4 bins.
VISIBILITY = (('1', 'v0-40'), ('2', 'v40-60'), ('3', 'v60-80'), ('4', 'v80-100'))
IMAGE_SIZE = (1600, 900)


def make_token(*parts) -> str:
    """A 32-hex-digit token (the datasets' token shape), a pure function of ``parts``."""
    return hashlib.md5('/'.join(map(str, parts)).encode()).hexdigest()


@dataclass(frozen=True)
class SceneSpec:
    """What to call a scene and where it was recorded.

    Attributes:
        name: Scene name (the splits select scenes by it).
        log: Log file name; also the prefix of the data file names.
        vehicle: Vehicle name.
        location: Map location.
        date: Capture date, ``YYYY-MM-DD``.
        start_us: Timestamp of the first sample, microseconds.
        annotated: Whether the scene gets annotations (test splits do not).
    """

    name: str
    log: str
    vehicle: str
    location: str
    date: str
    start_us: int
    annotated: bool = True


def _camera_intrinsic() -> List[List[float]]:
    return [[1260.0, 0.0, 800.0], [0.0, 1260.0, 450.0], [0.0, 0.0, 1.0]]


def _camera_rotation(yaw: float) -> List[float]:
    """Quaternion of a camera (x right, y down, z forward) looking along ego yaw ``yaw``."""
    base = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    return list(Quaternion(matrix=rotation_z(yaw) @ base).elements)


def visibility_token(visible: int, unoccluded: int) -> str:
    """The visibility bin of an object that returned ``visible`` of ``unoccluded`` points."""
    fraction = visible / unoccluded if unoccluded else 0.0
    for (token, _), upper in zip(VISIBILITY, (0.4, 0.6, 0.8)):
        if fraction <= upper:
            return token
    return VISIBILITY[-1][0]


class TableWriter:
    """Accumulates the tables of one dataset version and writes its data files.

    Args:
        fmt: The dataset format.
        data_root: Folder that ``sample_data`` and ``map`` file names are relative to.
        options: Generation settings.
        image_bytes: The encoded placeholder image every camera frame gets.
    """

    def __init__(self, fmt: DatasetFormat, data_root: str, options: Options,
                 image_bytes: bytes) -> None:
        self.fmt, self.root, self.opt, self.image = fmt, data_root, options, image_bytes
        self.rig = dataclasses.replace(fmt.rig, lidar=LidarModel(
            azimuth_steps=options.azimuth_steps, max_range=options.max_range))
        self.tables: Dict[str, List[dict]] = {name: [] for name in TABLES}
        self.tables['category'] = [dict(token=make_token('category', c), name=c,
                                        description=f'synthetic {c}') for c in fmt.categories]
        self.tables['attribute'] = [dict(token=make_token('attribute', a), name=a,
                                         description=f'synthetic {a}') for a in fmt.attributes]
        self.tables['visibility'] = [dict(token=t, level=level, description=f'{level}% visible')
                                     for t, level in VISIBILITY]
        channels = [('LIDAR_TOP', 'lidar')] + [(c, 'camera') for c, _ in CAMERAS]
        self.tables['sensor'] = [dict(token=make_token('sensor', c), channel=c, modality=m)
                                 for c, m in channels]
        self.maps: Dict[str, dict] = {}

    def _add_log(self, spec: SceneSpec) -> str:
        token = make_token(self.opt.seed, 'log', spec.log)
        if not any(r['token'] == token for r in self.tables['log']):
            self.tables['log'].append(dict(token=token, logfile=spec.log, vehicle=spec.vehicle,
                                           date_captured=spec.date, location=spec.location))
            if spec.location not in self.maps:
                map_token = make_token(self.opt.seed, 'map', spec.location)
                self.maps[spec.location] = dict(token=map_token, log_tokens=[],
                                                category='semantic_prior',
                                                filename=f'maps/{map_token}.png')
                self.tables['map'].append(self.maps[spec.location])
            self.maps[spec.location]['log_tokens'].append(token)
        return token

    def _calibrations(self, scene_key: str) -> Dict[str, str]:
        rig, tokens = self.rig, {}
        for sensor in self.tables['sensor']:
            token = make_token(scene_key, 'calibrated_sensor', sensor['channel'])
            if sensor['modality'] == 'lidar':
                record = dict(translation=list(rig.translation), rotation=yaw_quaternion(rig.yaw),
                              camera_intrinsic=[])
            else:
                yaw = dict(CAMERAS)[sensor['channel']]
                record = dict(translation=[1.5 * np.cos(yaw), 0.5 * np.sin(yaw), 1.5],
                              rotation=_camera_rotation(yaw), camera_intrinsic=_camera_intrinsic())
            self.tables['calibrated_sensor'].append(dict(token=token, sensor_token=sensor['token'],
                                                         **record))
            tokens[sensor['channel']] = token
        return tokens

    def _sample_data(self, scene: Scene, key: str, t: float, timestamp: int, sample: str,
                     calib: str, filename: str, ext: str, key_frame: bool, size=(0, 0)) -> dict:
        translation, yaw = scene.ego_pose(t)
        pose = make_token(key, 'ego_pose', filename)
        self.tables['ego_pose'].append(dict(token=pose, timestamp=timestamp,
                                            rotation=yaw_quaternion(yaw),
                                            translation=[float(v) for v in translation]))
        record = dict(token=make_token(key, 'sample_data', filename), sample_token=sample,
                      ego_pose_token=pose, calibrated_sensor_token=calib, timestamp=timestamp,
                      fileformat=ext, is_key_frame=key_frame, height=size[1], width=size[0],
                      filename=filename, prev='', next='')
        self.tables['sample_data'].append(record)
        return record

    def add_scene(self, spec: SceneSpec, index: int, progress=None) -> None:
        """Simulates one scene and appends its records; writes its files.

        Args:
            spec: Names and recording details of the scene.
            index: Scene index, part of the random seed.
            progress: Optional tqdm bar, advanced once per key frame.
        """
        opt, fmt = self.opt, self.fmt
        rng = np.random.default_rng([opt.seed, index])
        duration = (opt.samples_per_scene - 1) * fmt.keyframe_interval
        scene = make_scene(fmt.classes, rng, duration, opt.objects_per_scene)
        key = f'{opt.seed}/{spec.name}'
        scene_token = make_token(key, 'scene')
        log_token, calib = self._add_log(spec), self._calibrations(key)
        samples: List[dict] = []
        lidar_chain: List[dict] = []
        camera_chains: Dict[str, List[dict]] = {c: [] for c, _ in CAMERAS}
        annotations: Dict[int, List[dict]] = {}
        for k in range(opt.samples_per_scene):
            t_key = k * fmt.keyframe_interval
            sample = dict(token=make_token(key, 'sample', k), scene_token=scene_token,
                          timestamp=spec.start_us + int(round(t_key * 1e6)), prev='', next='')
            samples.append(sample)
            sweeps = opt.sweeps_per_sample if k else 0
            for j in range(sweeps, -1, -1):  # oldest sweep first, the key frame last
                record, lidar_scan = self._add_lidar(scene, spec, key, sample, calib,
                                                     t_key - j * fmt.sweep_interval, j == 0, rng)
                lidar_chain.append(record)
            for cam, _ in CAMERAS:
                camera_chains[cam].append(self._add_camera(scene, spec, key, sample, calib, cam))
            if spec.annotated:
                self._annotate(scene, key, sample, t_key, lidar_scan, annotations)
            if progress is not None:
                progress.update(1)
        for chain in [samples, lidar_chain, *camera_chains.values(), *annotations.values()]:
            _link(chain)
        self._add_instances(key, scene, annotations)
        self.tables['scene'].append(dict(
            token=scene_token, log_token=log_token, nbr_samples=len(samples),
            first_sample_token=samples[0]['token'], last_sample_token=samples[-1]['token'],
            name=spec.name, description=f'synthetic drive, {len(scene.objects)} objects'))
        self.tables['sample'] += samples

    def _add_lidar(self, scene: Scene, spec: SceneSpec, key: str, sample: dict,
                   calib: Dict[str, str], t: float, key_frame: bool, rng) -> tuple:
        """Simulates and writes one LiDAR revolution; returns its record and the scan."""
        timestamp = spec.start_us + int(round(t * 1e6))
        filename = self.fmt.lidar_file(spec.log, timestamp, key_frame)
        lidar_scan = scene.scan(t, self.rig, rng)
        self._write(filename, lidar_scan.points.tobytes())
        record = self._sample_data(scene, key, t, timestamp, sample['token'], calib['LIDAR_TOP'],
                                   filename, self.fmt.lidar_ext[0], key_frame)
        return record, lidar_scan

    def _add_camera(self, scene: Scene, spec: SceneSpec, key: str, sample: dict,
                    calib: Dict[str, str], cam: str) -> dict:
        """Writes one camera key frame (the placeholder image); returns its record."""
        timestamp = sample['timestamp'] + 12_000  # cameras fire just after the LiDAR
        filename = self.fmt.camera_file(spec.log, cam, timestamp)
        self._write(filename, self.image)
        t = (timestamp - spec.start_us) / 1e6
        return self._sample_data(scene, key, t, timestamp, sample['token'], calib[cam], filename,
                                 self.fmt.camera_ext[0], True, IMAGE_SIZE)

    def _annotate(self, scene: Scene, key: str, sample: dict, t: float, lidar_scan,
                  annotations: Dict[int, List[dict]]) -> None:
        boxes = scene.object_boxes(t)
        transform, yaw_offset = scene.to_lidar(t, self.rig)
        local = np.concatenate([boxes[:, :3] @ transform[:3, :3].T + transform[:3, 3],
                                boxes[:, 3:6], boxes[:, 6:] - yaw_offset], 1)
        annotated = np.nonzero(np.abs(local[:, :2]).max(1) <= self.opt.annotation_range)[0]
        num_points = count_points_in_boxes(lidar_scan.points[:, :3], local[annotated])
        for i, points_inside in zip(annotated, num_points):
            obj = scene.objects[i]
            attribute = self.fmt.attribute(obj)
            annotations.setdefault(int(i), []).append(dict(
                token=make_token(key, 'sample_annotation', sample['token'], i),
                sample_token=sample['token'], instance_token=make_token(key, 'instance', i),
                visibility_token=visibility_token(lidar_scan.visible_hits[i],
                                                  lidar_scan.unoccluded_hits[i]),
                attribute_tokens=[make_token('attribute', attribute)] if attribute else [],
                translation=[float(v) for v in boxes[i, :3]],
                size=[float(boxes[i, 4]), float(boxes[i, 3]), float(boxes[i, 5])],  # w, l, h
                rotation=yaw_quaternion(boxes[i, 6]), prev='', next='',
                num_lidar_pts=int(points_inside), num_radar_pts=0))

    def _add_instances(self, key: str, scene: Scene, annotations: Dict[int, List[dict]]) -> None:
        for i, records in sorted(annotations.items()):
            self.tables['instance'].append(dict(
                token=make_token(key, 'instance', i),
                category_token=make_token('category', scene.objects[i].cls.category),
                nbr_annotations=len(records), first_annotation_token=records[0]['token'],
                last_annotation_token=records[-1]['token']))
            self.tables['sample_annotation'] += records

    def _write(self, filename: str, data: bytes) -> None:
        path = os.path.join(self.root, filename)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'wb') as f:
            f.write(data)

    def finish(self, table_dir: str, map_png: bytes, annotated: bool = True) -> None:
        """Writes the map images and the JSON tables into ``table_dir``.

        Args:
            table_dir: Folder of the version's tables.
            map_png: Encoded map image for every location.
            annotated: Whether to write the instance and annotation tables
                (test versions ship without them).
        """
        for record in self.tables['map']:
            self._write(record['filename'], map_png)
        os.makedirs(table_dir, exist_ok=True)
        for name, rows in self.tables.items():
            if annotated or name not in ('instance', 'sample_annotation'):
                with open(os.path.join(table_dir, f'{name}.json'), 'w') as f:
                    json.dump(rows, f, indent=0)


def _link(chain: Sequence[dict]) -> None:
    """Sets ``prev``/``next`` of records that follow each other in time."""
    for a, b in zip(chain[:-1], chain[1:]):
        a['next'], b['prev'] = b['token'], a['token']


def placeholder_images() -> Tuple[bytes, bytes]:
    """Encoded camera (JPEG, sky over road) and map (PNG, road strip) placeholders."""
    import cv2  # lazy: OpenCV, only for the placeholder images
    width, height = IMAGE_SIZE
    image = np.zeros((height, width, 3), np.uint8)
    image[: height // 2] = (200, 170, 120)
    image[height // 2:] = (90, 90, 90)
    road_map = np.zeros((200, 200), np.uint8)
    road_map[80:120] = 255
    return cv2.imencode('.jpg', image)[1].tobytes(), cv2.imencode('.png', road_map)[1].tobytes()
