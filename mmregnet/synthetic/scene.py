"""A synthetic street scene: a road, traffic, pedestrians, street furniture and a
driving ego vehicle with a roof LiDAR, in a global (map) frame.

Frames follow nuScenes: global (map, z up, ground at z = 0), ego (x forward,
y left) and the LiDAR (mounted on the ego with a translation and a yaw).
"""
from dataclasses import dataclass, field
from typing import List, Sequence, Tuple

import numpy as np

from .lidar import LidarModel, Scan, scan
from .objects import (WHOLE, ObjectClass, Road, SceneObject, part_boxes,
                      sample_objects)

WALL = ObjectClass('', (200.0, 1.0, 8.0), WHOLE, 'offroad', (0, 0), 0, 40.0, 0, 'background')
POLE = ObjectClass('', (0.3, 0.3, 5.0), WHOLE, 'sidewalk', (0, 0), 0, 60.0, 0, 'background')
TREE = ObjectClass('', (3.0, 3.0, 6.0), ((0.42, 0.58, 0.42, 0.58, 0, 0.45), (0, 1, 0, 1, 0.45, 1)),
                   'sidewalk', (0, 0), 0, 25.0, 0, 'background')


@dataclass(frozen=True)
class Rig:
    """Where the LiDAR sits on the ego vehicle.

    Attributes:
        translation: LiDAR position in the ego frame (m).
        yaw: LiDAR yaw in the ego frame (rad).
        lidar: The LiDAR model.
    """

    translation: Tuple[float, float, float] = (0.94, 0.0, 1.84)
    yaw: float = -np.pi / 2
    lidar: LidarModel = field(default_factory=LidarModel)


def rotation_z(yaw: float) -> np.ndarray:
    """3x3 rotation about z by ``yaw`` radians."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def yaw_quaternion(yaw: float) -> List[float]:
    """Quaternion [w, x, y, z] of a rotation about z by ``yaw`` radians."""
    return [float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2))]


@dataclass
class Scene:
    """A road segment with objects and the ego's drive along it.

    Attributes:
        origin: Global (x, y) of the road frame's origin.
        heading: Global yaw of the road's +x direction.
        ego_y: Lateral position of the ego's lane in the road frame.
        ego_speed: Ego speed along +x (m/s).
        objects: Annotated objects.
        background: Unannotated structures (facades, poles, trees).
    """

    origin: Tuple[float, float]
    heading: float
    ego_y: float
    ego_speed: float
    objects: List[SceneObject]
    background: List[SceneObject]

    def ego_pose(self, t: float) -> Tuple[np.ndarray, float]:
        """Global translation (3,) and yaw of the ego at time ``t`` (s)."""
        local = np.array([self.ego_speed * t, self.ego_y, 0.0])
        return np.array([*self.origin, 0.0]) + rotation_z(self.heading) @ local, self.heading

    def object_boxes(self, t: float) -> np.ndarray:
        """(O, 7) global boxes at time ``t``: centre x, y, z, length, width, height, yaw."""
        rows = []
        for obj in self.objects:
            x, y = obj.position(t)
            centre = np.array([*self.origin, 0.0]) + rotation_z(self.heading) @ [x, y, 0.0]
            centre[2] = obj.size[2] / 2
            rows.append([*centre, *obj.size, obj.yaw + self.heading])
        return np.array(rows, dtype=float).reshape(-1, 7)

    def to_lidar(self, t: float, rig: Rig) -> Tuple[np.ndarray, float]:
        """The transform from global to LiDAR coordinates at time ``t``.

        Returns:
            A (4, 4) matrix and the yaw to subtract from global yaws.
        """
        ego_t, ego_yaw = self.ego_pose(t)
        lidar_to_ego = np.eye(4)
        lidar_to_ego[:3, :3] = rotation_z(rig.yaw)
        lidar_to_ego[:3, 3] = rig.translation
        ego_to_global = np.eye(4)
        ego_to_global[:3, :3] = rotation_z(ego_yaw)
        ego_to_global[:3, 3] = ego_t
        return np.linalg.inv(ego_to_global @ lidar_to_ego), ego_yaw + rig.yaw

    def sensor_boxes(self, t: float, rig: Rig) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All solid parts in the LiDAR frame at time ``t``.

        Returns:
            (B, 7) boxes (centre, half-sizes, yaw), (B,) owner object index
            (-1 for background) and (B,) mean intensity.
        """
        transform, yaw_offset = self.to_lidar(t, rig)
        boxes, owner, intensity = [], [], []
        for index, obj in enumerate(self.objects + self.background):
            x, y = obj.position(t)
            parts = part_boxes(obj)
            rot = rotation_z(obj.yaw)
            centre = parts[:, :3] @ rot.T + [x, y, 0.0]
            global_centre = centre @ rotation_z(self.heading).T + [*self.origin, 0.0]
            lidar_centre = global_centre @ transform[:3, :3].T + transform[:3, 3]
            yaw = np.full(len(parts), obj.yaw + self.heading - yaw_offset)
            boxes.append(np.concatenate([lidar_centre, parts[:, 3:], yaw[:, None]], 1))
            owner += [index if index < len(self.objects) else -1] * len(parts)
            intensity += [obj.cls.intensity] * len(parts)
        return np.concatenate(boxes), np.array(owner), np.array(intensity)

    def scan(self, t: float, rig: Rig, rng: np.random.Generator) -> Scan:
        """Simulates the LiDAR revolution at time ``t``."""
        boxes, owner, intensity = self.sensor_boxes(t, rig)
        return scan(rig.lidar, boxes, owner, intensity, rig.translation[2], len(self.objects), rng)


def make_scene(classes: Sequence[ObjectClass], rng: np.random.Generator, duration: float,
               num_objects: int = 40, road: Road = Road()) -> Scene:
    """Draws a scene: road placement, ego drive, traffic and street furniture.

    Args:
        classes: Object classes to populate the road with.
        rng: Random generator (the only source of randomness).
        duration: Length of the drive (s); objects fill the stretch the ego covers.
        num_objects: Placement attempts for annotated objects.
        road: Road layout.

    Returns:
        The scene.
    """
    lanes = road.lane_centres()
    lane_speeds = [float(rng.choice([0.0, rng.uniform(2, 9)])) for _ in lanes]
    ego_lane = 0  # the rightmost lane towards +x
    ego_speed = lane_speeds[ego_lane] * rng.uniform(0.9, 1.0)
    reach = ego_speed * duration
    objects = sample_objects(classes, num_objects, (-25.0, reach + 25.0), rng, road, lane_speeds)
    # Keep the ego's own lane clear around its path.
    objects = [o for o in objects if not (abs(o.y - lanes[ego_lane][0]) < road.lane_width / 2
                                         and -8 < o.x < reach + 8)]
    background = [SceneObject(WALL, WALL.size, reach / 2, side * (road.wall + 0.5), 0.0, 0.0)
                  for side in (-1.0, 1.0)]
    for x in np.arange(-40.0, reach + 40.0, 12.0):
        furniture = TREE if rng.random() < 0.5 else POLE
        side = rng.choice([-1.0, 1.0])
        y = side * (road.sidewalk[1] - 0.3 - furniture.size[1] / 2)
        background.append(SceneObject(furniture, furniture.size, float(x + rng.uniform(-3, 3)),
                                      float(y), 0.0, 0.0))
    origin = (float(rng.uniform(300, 2000)), float(rng.uniform(300, 2000)))
    return Scene(origin, float(rng.uniform(-np.pi, np.pi)), lanes[ego_lane][0],
                 float(ego_speed), objects, background)
