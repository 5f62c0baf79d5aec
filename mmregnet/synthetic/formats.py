"""The two on-disk formats: nuScenes (v1.0-mini layout) and Lyft Level 5 (v1.01).

Both share the nuScenes relational schema (scene, sample, sample_data,
ego_pose, calibrated_sensor, sensor, log, map, category, attribute,
visibility, instance, sample_annotation); they differ in folder layout, file
names, category names, frame rate and splits, which a :class:`DatasetFormat`
captures.
"""
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import numpy as np

from .objects import (BUS_PARTS, CAR_PARTS, CONE_PARTS, CYCLE_PARTS, PERSON_PARTS,
                      TRAILER_PARTS, TRUCK_PARTS, WHOLE, ANIMAL_PARTS, ObjectClass,
                      SceneObject)
from .scene import Rig

CAMERAS: Tuple[Tuple[str, float], ...] = (
    ('CAM_FRONT', 0.0), ('CAM_FRONT_RIGHT', -0.96), ('CAM_FRONT_LEFT', 0.96),
    ('CAM_BACK', np.pi), ('CAM_BACK_LEFT', 1.92), ('CAM_BACK_RIGHT', -1.92))


def _cls(category: str, size, parts, placement: str, weight: float, intensity: float,
         kind: str, speed=(0.0, 0.0), moving_prob: float = 0.0) -> ObjectClass:
    return ObjectClass(category, size, parts, placement, speed, moving_prob, intensity,
                       weight, kind)


NUSCENES_CLASSES: Tuple[ObjectClass, ...] = (
    _cls('vehicle.car', (4.6, 1.95, 1.7), CAR_PARTS, 'lane', 7, 35, 'vehicle'),
    _cls('vehicle.car', (4.6, 1.95, 1.7), CAR_PARTS, 'roadside', 5, 35, 'vehicle'),
    _cls('vehicle.truck', (6.9, 2.5, 2.9), TRUCK_PARTS, 'lane', 2, 30, 'vehicle'),
    _cls('vehicle.truck', (6.9, 2.5, 2.9), TRUCK_PARTS, 'roadside', 1.5, 30, 'vehicle'),
    _cls('vehicle.trailer', (11.5, 2.9, 3.8), TRAILER_PARTS, 'roadside', 2, 25, 'vehicle'),
    _cls('vehicle.bus.rigid', (11.0, 2.95, 3.4), BUS_PARTS, 'lane', 1.5, 30, 'vehicle'),
    _cls('vehicle.bus.rigid', (11.0, 2.95, 3.4), BUS_PARTS, 'roadside', 1, 30, 'vehicle'),
    _cls('vehicle.construction', (6.5, 2.8, 3.2), TRUCK_PARTS, 'offroad', 2.5, 45, 'vehicle'),
    _cls('vehicle.bicycle', (1.75, 0.6, 1.3), CYCLE_PARTS, 'sidewalk', 3, 20, 'cycle',
         (2.0, 5.0), 0.5),
    _cls('vehicle.motorcycle', (2.1, 0.8, 1.45), CYCLE_PARTS, 'roadside', 3, 40, 'cycle'),
    _cls('human.pedestrian.adult', (0.75, 0.7, 1.75), PERSON_PARTS, 'sidewalk', 8, 15,
         'pedestrian', (0.8, 1.6), 0.6),
    _cls('movable_object.trafficcone', (0.4, 0.4, 1.0), CONE_PARTS, 'roadside', 5, 150,
         'static'),
    _cls('movable_object.barrier', (2.2, 0.5, 1.0), WHOLE, 'roadside', 4, 90, 'static'),
)

# The 23 nuScenes v1.0 categories; the descriptions are this project's own words.
NUSCENES_CATEGORIES: Tuple[str, ...] = (
    'human.pedestrian.adult', 'human.pedestrian.child', 'human.pedestrian.wheelchair',
    'human.pedestrian.stroller', 'human.pedestrian.personal_mobility',
    'human.pedestrian.police_officer', 'human.pedestrian.construction_worker', 'animal',
    'vehicle.car', 'vehicle.motorcycle', 'vehicle.bicycle', 'vehicle.bus.bendy',
    'vehicle.bus.rigid', 'vehicle.truck', 'vehicle.construction',
    'vehicle.emergency.ambulance', 'vehicle.emergency.police', 'vehicle.trailer',
    'movable_object.barrier', 'movable_object.trafficcone',
    'movable_object.pushable_pullable', 'movable_object.debris', 'static_object.bicycle_rack')

NUSCENES_ATTRIBUTES: Tuple[str, ...] = (
    'vehicle.moving', 'vehicle.stopped', 'vehicle.parked', 'cycle.with_rider',
    'cycle.without_rider', 'pedestrian.sitting_lying_down', 'pedestrian.standing',
    'pedestrian.moving')

LYFT_CLASSES: Tuple[ObjectClass, ...] = (
    _cls('car', (4.75, 1.92, 1.71), CAR_PARTS, 'lane', 7, 35, 'vehicle'),
    _cls('car', (4.75, 1.92, 1.71), CAR_PARTS, 'roadside', 5, 35, 'vehicle'),
    _cls('truck', (10.2, 2.85, 3.4), TRUCK_PARTS, 'lane', 1.5, 30, 'vehicle'),
    _cls('bus', (12.3, 2.96, 3.44), BUS_PARTS, 'lane', 1.5, 30, 'vehicle'),
    _cls('emergency_vehicle', (6.5, 2.45, 2.4), CAR_PARTS, 'roadside', 1, 120, 'vehicle'),
    _cls('other_vehicle', (8.2, 2.8, 3.2), TRUCK_PARTS, 'offroad', 2, 45, 'vehicle'),
    _cls('motorcycle', (2.35, 0.96, 1.59), CYCLE_PARTS, 'roadside', 2, 40, 'cycle'),
    _cls('bicycle', (1.76, 0.63, 1.44), CYCLE_PARTS, 'sidewalk', 2, 20, 'cycle', (2.0, 5.0), 0.5),
    _cls('pedestrian', (0.8, 0.77, 1.78), PERSON_PARTS, 'sidewalk', 6, 15, 'pedestrian',
         (0.8, 1.6), 0.6),
    _cls('animal', (0.73, 0.36, 0.5), ANIMAL_PARTS, 'sidewalk', 1, 10, 'pedestrian',
         (0.5, 2.0), 0.5),
)

LYFT_CATEGORIES: Tuple[str, ...] = ('car', 'pedestrian', 'animal', 'other_vehicle', 'bus',
                                    'motorcycle', 'truck', 'emergency_vehicle', 'bicycle')
LYFT_ATTRIBUTES: Tuple[str, ...] = (
    'object_action_driving_straight_forward', 'object_action_stopped',
    'object_action_parked', 'object_action_walking', 'object_action_standing')


def nuscenes_attribute(obj: SceneObject) -> Optional[str]:
    """The nuScenes attribute of an object, or None for static furniture."""
    kind = obj.cls.kind
    if kind == 'vehicle':
        if obj.moving:
            return 'vehicle.moving'
        return 'vehicle.stopped' if obj.cls.placement == 'lane' else 'vehicle.parked'
    if kind == 'cycle':
        return 'cycle.with_rider' if obj.moving else 'cycle.without_rider'
    if kind == 'pedestrian':
        return 'pedestrian.moving' if obj.moving else 'pedestrian.standing'
    return None


def lyft_attribute(obj: SceneObject) -> Optional[str]:
    """The Lyft attribute of an object, or None for static furniture."""
    if obj.cls.kind == 'pedestrian':
        return 'object_action_walking' if obj.moving else 'object_action_standing'
    if obj.moving:
        return 'object_action_driving_straight_forward'
    return 'object_action_stopped' if obj.cls.placement == 'lane' else 'object_action_parked'


@dataclass(frozen=True)
class DatasetFormat:
    """Layout and vocabulary of one dataset format.

    Attributes:
        name: ``'nuscenes'`` or ``'lyft'``.
        classes: The simulated object classes.
        categories: Every category name of the format's category table.
        attributes: Every attribute name of the attribute table.
        attribute: The attribute of an object (None: no attribute).
        keyframe_interval: Seconds between annotated samples.
        sweep_interval: Seconds between LiDAR revolutions.
        lidar_ext: LiDAR ``fileformat`` value and file suffix.
        camera_ext: Camera ``fileformat`` value and file suffix.
        lidar_file: Relative LiDAR file name from (log name, timestamp, key frame).
        camera_file: Relative image file name from (log name, channel, timestamp).
        rig: Sensor mounting.
    """

    name: str
    classes: Tuple[ObjectClass, ...]
    categories: Tuple[str, ...]
    attributes: Tuple[str, ...]
    attribute: Callable[[SceneObject], Optional[str]]
    keyframe_interval: float
    sweep_interval: float
    lidar_ext: Tuple[str, str]
    camera_ext: Tuple[str, str]
    lidar_file: Callable[[str, int, bool], str]
    camera_file: Callable[[str, str, int], str]
    rig: Rig


NUSCENES = DatasetFormat(
    'nuscenes', NUSCENES_CLASSES, NUSCENES_CATEGORIES, NUSCENES_ATTRIBUTES, nuscenes_attribute,
    0.5, 0.05, ('pcd', '.pcd.bin'), ('jpg', '.jpg'),
    lambda log, ts, key: f'{"samples" if key else "sweeps"}/LIDAR_TOP/{log}__LIDAR_TOP__{ts}.pcd.bin',
    lambda log, cam, ts: f'samples/{cam}/{log}__{cam}__{ts}.jpg',
    Rig((0.94, 0.0, 1.84), -np.pi / 2))

LYFT = DatasetFormat(
    'lyft', LYFT_CLASSES, LYFT_CATEGORIES, LYFT_ATTRIBUTES, lyft_attribute,
    0.2, 0.2, ('bin', '.bin'), ('jpeg', '.jpeg'),
    lambda log, ts, key: f'lidar/{log}_lidar1_{ts}.bin',
    lambda log, cam, ts: f'images/{log}_cam{[c for c, _ in CAMERAS].index(cam)}_{ts}.jpeg',
    Rig((1.2, 0.0, 1.84), 0.0))
