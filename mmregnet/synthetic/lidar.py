"""A spinning multi-beam LiDAR, ray-cast against a flat ground and solid boxes.

Points land only on surfaces the sensor sees: each ray stops at the nearest
box face or at the ground, so objects occlude each other and show the sides
that face the sensor. All geometry is in the sensor frame (x, y level with
the ground, z up, origin at the sensor).
"""
from dataclasses import dataclass
from typing import Tuple

import numpy as np


@dataclass(frozen=True)
class LidarModel:
    """Beam layout and noise of the simulated sensor.

    The default elevations span -30.67 to +10.67 degrees in 32 beams, the
    published field of view of a 32-beam roof LiDAR.

    Attributes:
        beams: Number of laser beams (rings).
        min_elevation, max_elevation: Elevation span in degrees.
        azimuth_steps: Firings per revolution and beam.
        max_range: Returns beyond this range (m) are lost.
        range_noise: Standard deviation of the range (m).
        dropout: Fraction of returns lost at random.
    """

    beams: int = 32
    min_elevation: float = -30.67
    max_elevation: float = 10.67
    azimuth_steps: int = 1080
    max_range: float = 70.0
    range_noise: float = 0.02
    dropout: float = 0.03

    def rays(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unit directions of one revolution.

        Returns:
            (R, 3) directions, (R,) azimuths in [-pi, pi) and (R,) ring
            indices (0 is the lowest beam), R = beams * azimuth_steps.
        """
        elevation = np.deg2rad(np.linspace(self.min_elevation, self.max_elevation, self.beams))
        azimuth = np.linspace(-np.pi, np.pi, self.azimuth_steps, endpoint=False)
        el, az = np.meshgrid(elevation, azimuth, indexing='ij')
        el, az = el.ravel(), az.ravel()
        dirs = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], 1)
        ring = np.repeat(np.arange(self.beams), self.azimuth_steps)
        return dirs, az, ring


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2 * np.pi) - np.pi


def box_hits(dirs: np.ndarray, azimuth: np.ndarray, box: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Distances at which rays from the origin enter one oriented box.

    Args:
        dirs: (R, 3) unit ray directions.
        azimuth: (R,) azimuth of each ray.
        box: (7,) centre x, y, z, half-sizes x, y, z and yaw.

    Returns:
        Indices of the rays that hit the box and their (K,) distances.
    """
    centre, half, yaw = box[:3], box[3:6], box[6]
    corners = np.array([[sx, sy] for sx in (-1, 1) for sy in (-1, 1)]) * half[:2]
    rot = np.array([[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]])
    corners = corners @ rot.T + centre[:2]
    if np.hypot(*centre[:2]) <= np.hypot(*half[:2]):
        candidates = np.arange(len(dirs))  # the sensor is next to or inside the box
    else:
        mid = np.arctan2(centre[1], centre[0])
        spread = _wrap(np.arctan2(corners[:, 1], corners[:, 0]) - mid)
        offset = _wrap(azimuth - mid)
        candidates = np.nonzero((offset >= spread.min()) & (offset <= spread.max()))[0]
    d = dirs[candidates]
    # The ray in the box frame: rotate by -yaw around z.
    local_d = np.stack([np.cos(yaw) * d[:, 0] + np.sin(yaw) * d[:, 1],
                        -np.sin(yaw) * d[:, 0] + np.cos(yaw) * d[:, 1], d[:, 2]], 1)
    origin = -np.array([np.cos(yaw) * centre[0] + np.sin(yaw) * centre[1],
                        -np.sin(yaw) * centre[0] + np.cos(yaw) * centre[1], centre[2]])
    local_d = np.where(np.abs(local_d) < 1e-12, 1e-12, local_d)
    t1 = (-half - origin) / local_d
    t2 = (half - origin) / local_d
    t_near = np.minimum(t1, t2).max(1)
    t_far = np.maximum(t1, t2).min(1)
    hit = (t_far >= t_near) & (t_near > 0)
    return candidates[hit], t_near[hit]


@dataclass
class Scan:
    """One LiDAR revolution.

    Attributes:
        points: (N, 5) float32 x, y, z, intensity (0-255), ring index.
        owner: (N,) index of the object each point lies on, -1 for ground
            and background.
        visible_hits: (O,) returns each object produced.
        unoccluded_hits: (O,) returns each object would produce if nothing
            stood in front of it.
    """

    points: np.ndarray
    owner: np.ndarray
    visible_hits: np.ndarray
    unoccluded_hits: np.ndarray


def scan(model: LidarModel, boxes: np.ndarray, owner: np.ndarray, intensity: np.ndarray,
         sensor_height: float, num_objects: int, rng: np.random.Generator) -> Scan:
    """Simulates one revolution over a flat ground and solid boxes.

    Args:
        model: The sensor.
        boxes: (B, 7) boxes in the sensor frame (centre, half-sizes, yaw).
        owner: (B,) object index of each box, -1 for unannotated background.
        intensity: (B,) mean return intensity of each box.
        sensor_height: Height of the sensor over the ground (m).
        num_objects: Number of annotated objects (length of the hit counts).
        rng: Random generator for the noise.

    Returns:
        The simulated scan.
    """
    dirs, azimuth, ring = model.rays()
    with np.errstate(divide='ignore'):
        depth = np.where(dirs[:, 2] < 0, -sensor_height / dirs[:, 2], np.inf)
    hit_owner = np.full(len(dirs), -1)
    hit_intensity = np.full(len(dirs), 12.0)  # asphalt returns weakly
    ground_depth = depth.copy()
    seen = []  # ray ids an object would return alone, offset by owner * rays
    for box, box_owner, box_intensity in zip(boxes, owner, intensity):
        rays, t = box_hits(dirs, azimuth, box)
        if box_owner >= 0:
            seen.append(rays[(t < ground_depth[rays]) & (t < model.max_range)] + box_owner * len(dirs))
        closer = t < depth[rays]
        rays, t = rays[closer], t[closer]
        depth[rays] = t
        hit_owner[rays] = box_owner
        hit_intensity[rays] = box_intensity
    keep = (depth < model.max_range) & (rng.random(len(dirs)) >= model.dropout)
    depth = depth[keep] + rng.normal(0, model.range_noise, keep.sum())
    xyz = dirs[keep] * depth[:, None]
    power = hit_intensity[keep] * rng.uniform(0.7, 1.3, keep.sum())
    points = np.concatenate([xyz, np.clip(power, 0, 255)[:, None], ring[keep, None]], 1)
    kept_owner = hit_owner[keep]
    visible = np.bincount(kept_owner[kept_owner >= 0], minlength=num_objects)
    seen_ids = np.unique(np.concatenate(seen)) if seen else np.zeros(0, dtype=int)
    unoccluded = np.bincount(seen_ids // len(dirs), minlength=num_objects)
    return Scan(points.astype(np.float32), kept_owner, visible, np.maximum(unoccluded, visible))


def count_points_in_boxes(xyz: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """How many points lie inside each box (faces included), as annotators count them.

    Args:
        xyz: (N, 3) points.
        boxes: (B, 7) boxes: centre x, y, z, length, width, height (full sizes), yaw.

    Returns:
        (B,) point counts.
    """
    counts = np.zeros(len(boxes), dtype=int)
    for i, box in enumerate(boxes):
        offset = xyz - box[:3]
        c, s = np.cos(box[6]), np.sin(box[6])
        local = np.stack([c * offset[:, 0] + s * offset[:, 1],
                          -s * offset[:, 0] + c * offset[:, 1], offset[:, 2]], 1)
        counts[i] = np.all(np.abs(local) <= box[3:6] / 2, axis=1).sum()
    return counts
