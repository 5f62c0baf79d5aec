"""Object classes of the synthetic street scenes and their placement on a road.

Every object is an oriented 3D box (the annotation) built from a few solid
parts (body and cabin, legs and torso, ...) that the simulated LiDAR sees.
Sizes, speeds and placements are plausible street values, not statistics
copied from any dataset.
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

# A part as fractions of the object's box: (x0, x1, y0, y1, z0, z1), x along
# the heading, y to the left, z up, each in [0, 1].
Part = Tuple[float, float, float, float, float, float]

WHOLE: Tuple[Part, ...] = ((0, 1, 0, 1, 0, 1),)
CAR_PARTS: Tuple[Part, ...] = ((0, 1, 0, 1, 0.15, 0.6), (0.2, 0.75, 0.05, 0.95, 0.6, 1))
TRUCK_PARTS: Tuple[Part, ...] = ((0.75, 1, 0, 1, 0.1, 0.75), (0, 0.72, 0, 1, 0.12, 1))
BUS_PARTS: Tuple[Part, ...] = ((0, 1, 0, 1, 0.1, 1),)
TRAILER_PARTS: Tuple[Part, ...] = ((0, 1, 0, 1, 0.3, 1), (0.05, 0.2, 0.1, 0.9, 0, 0.3))
CYCLE_PARTS: Tuple[Part, ...] = ((0, 1, 0.35, 0.65, 0, 0.55), (0.3, 0.65, 0.15, 0.85, 0.55, 1))
PERSON_PARTS: Tuple[Part, ...] = ((0.3, 0.7, 0.2, 0.8, 0, 0.48), (0.1, 0.9, 0, 1, 0.48, 0.86),
                                  (0.3, 0.7, 0.3, 0.7, 0.86, 1))
CONE_PARTS: Tuple[Part, ...] = ((0, 1, 0, 1, 0, 0.08), (0.25, 0.75, 0.25, 0.75, 0.08, 1))
ANIMAL_PARTS: Tuple[Part, ...] = ((0, 1, 0.1, 0.9, 0.45, 1), (0.1, 0.25, 0.3, 0.7, 0, 0.45),
                                  (0.75, 0.9, 0.3, 0.7, 0, 0.45))


@dataclass(frozen=True)
class ObjectClass:
    """How one object class looks, where it stands and how it moves.

    Attributes:
        category: The dataset's category name (e.g. ``'vehicle.car'``).
        size: Mean length, width, height in metres.
        parts: Solid parts as fractions of the box (see ``Part``).
        placement: ``'lane'``, ``'roadside'``, ``'sidewalk'`` or ``'offroad'``.
        speed: Range of speeds in m/s when moving.
        moving_prob: Probability that an instance moves.
        intensity: Mean LiDAR return intensity (0-255).
        weight: Relative frequency of the class in a scene.
        kind: ``'vehicle'``, ``'cycle'``, ``'pedestrian'`` or ``'static'``:
            selects the attributes.
    """

    category: str
    size: Tuple[float, float, float]
    parts: Tuple[Part, ...]
    placement: str
    speed: Tuple[float, float]
    moving_prob: float
    intensity: float
    weight: float
    kind: str


@dataclass
class SceneObject:
    """One object of a scene, in the road frame (x along the road, y left).

    Attributes:
        cls: Its class.
        size: Length, width, height in metres.
        x, y: Position of the box centre at time 0 (m).
        yaw: Heading in the road frame (rad).
        speed: Speed along the heading (m/s).
    """

    cls: ObjectClass
    size: Tuple[float, float, float]
    x: float
    y: float
    yaw: float
    speed: float

    def position(self, t: float) -> Tuple[float, float]:
        """Centre of the box at time ``t`` (s) in the road frame."""
        return (self.x + self.speed * np.cos(self.yaw) * t,
                self.y + self.speed * np.sin(self.yaw) * t)

    @property
    def moving(self) -> bool:
        """Whether the object moves (faster than a walking shuffle)."""
        return self.speed > 0.3


@dataclass(frozen=True)
class Road:
    """Layout of the straight road every scene is built on (road frame, metres).

    Attributes:
        lane_width: Width of one lane.
        lanes_per_side: Lanes per driving direction; traffic keeps right.
        sidewalk: (inner, outer) |y| of the sidewalks.
        wall: |y| of the building facades.
    """

    lane_width: float = 3.5
    lanes_per_side: int = 2
    sidewalk: Tuple[float, float] = (8.0, 11.0)
    wall: float = 14.0

    def lane_centres(self) -> List[Tuple[float, float]]:
        """(y, heading) of every lane centre; heading 0 drives towards +x."""
        lanes = []
        for i in range(self.lanes_per_side):
            offset = (i + 0.5) * self.lane_width
            lanes += [(-offset, 0.0), (offset, np.pi)]
        return lanes

    @property
    def edge(self) -> float:
        """|y| of the kerb."""
        return self.lanes_per_side * self.lane_width


def _lateral(placement: str, road: Road, rng: np.random.Generator,
             width: float) -> Tuple[Optional[float], float]:
    """Lateral position and heading for a placement (lane placement returns None)."""
    side = rng.choice([-1.0, 1.0])
    if placement == 'roadside':
        y = side * (road.edge + 0.4 + width / 2 + rng.uniform(0, 0.4))
        return y, (0.0 if side < 0 else np.pi) + rng.normal(0, 0.05)
    if placement == 'sidewalk':
        y = side * rng.uniform(road.sidewalk[0] + width / 2, road.sidewalk[1] - width / 2)
        return y, rng.choice([0.0, np.pi]) + rng.normal(0, 0.2)
    if placement == 'offroad':
        y = side * rng.uniform(road.sidewalk[1] + 0.5, road.wall - 1.5)
        return y, rng.uniform(-np.pi, np.pi)
    return None, 0.0


def sample_objects(classes: Sequence[ObjectClass], count: int, x_range: Tuple[float, float],
                   rng: np.random.Generator, road: Road = Road(),
                   lane_speeds: Optional[Sequence[float]] = None) -> List[SceneObject]:
    """Places up to ``count`` non-overlapping objects along the road.

    Objects in one lane share that lane's speed, so traffic never collides.

    Args:
        classes: The classes to draw from, by their ``weight``.
        count: Number of placement attempts.
        x_range: Span of the road (m) the objects start in.
        rng: Random generator (the only source of randomness).
        road: Road layout.
        lane_speeds: Speed of each lane of ``road.lane_centres()``.

    Returns:
        The placed objects.
    """
    lanes = road.lane_centres()
    if lane_speeds is None:
        lane_speeds = [0.0] * len(lanes)
    weights = np.array([c.weight for c in classes], dtype=float)
    placed: List[SceneObject] = []
    for _ in range(count):
        cls = classes[rng.choice(len(classes), p=weights / weights.sum())]
        size = tuple(float(s * rng.uniform(0.9, 1.1)) for s in cls.size)
        x = float(rng.uniform(*x_range))
        y, yaw = _lateral(cls.placement, road, rng, size[1])
        speed = float(rng.uniform(*cls.speed)) if rng.random() < cls.moving_prob else 0.0
        if y is None:  # in a lane: the lane sets heading and speed
            lane = int(rng.integers(len(lanes)))
            y, yaw = lanes[lane][0] + rng.normal(0, 0.15), lanes[lane][1]
            speed = float(lane_speeds[lane])
        obj = SceneObject(cls, size, x, float(y), float(yaw), speed)
        if all(_apart(obj, other) for other in placed):
            placed.append(obj)
    return placed


def _apart(a: SceneObject, b: SceneObject, margin: float = 0.5) -> bool:
    """Whether two objects' bounding circles stay clear of each other at time 0."""
    ra = np.hypot(a.size[0], a.size[1]) / 2
    rb = np.hypot(b.size[0], b.size[1]) / 2
    return np.hypot(a.x - b.x, a.y - b.y) > ra + rb + margin


def part_boxes(obj: SceneObject) -> np.ndarray:
    """The solid parts of an object in its own frame.

    Args:
        obj: The object.

    Returns:
        (P, 6) array of part centres (x, y, z; z from the ground) and
        half-sizes, in the object frame (x forward, y left).
    """
    length, width, height = obj.size
    parts = np.array(obj.cls.parts, dtype=float)
    lo = np.stack([parts[:, 0] * length, parts[:, 2] * width, parts[:, 4] * height], 1)
    hi = np.stack([parts[:, 1] * length, parts[:, 3] * width, parts[:, 5] * height], 1)
    centre = (lo + hi) / 2 - np.array([length / 2, width / 2, 0.0])
    return np.concatenate([centre, (hi - lo) / 2], 1)
