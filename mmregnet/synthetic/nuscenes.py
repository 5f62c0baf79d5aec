"""The nuScenes writer: a v1.0-mini layout whose scene names the devkit's
``mini_train`` / ``mini_val`` splits select.

Layout under the root: ``v1.0-mini/*.json`` (the 13 tables),
``samples/LIDAR_TOP/*.pcd.bin`` (key frames), ``sweeps/LIDAR_TOP/*.pcd.bin``,
``samples/CAM_*/*.jpg`` (placeholder images: the detector is LiDAR-only) and
``maps/*.png``. A ``.pcd.bin`` holds float32 rows of x, y, z, intensity, ring.
"""
import os

from tqdm import tqdm

from ..errors import InputError
from .formats import NUSCENES
from .writer import Options, SceneSpec, TableWriter, placeholder_images

VERSION = 'v1.0-mini'
# Scene names of nuscenes-devkit's mini splits (nuscenes/utils/splits.py).
MINI_TRAIN = ('scene-0061', 'scene-0553', 'scene-0655', 'scene-0757', 'scene-0796',
              'scene-1077', 'scene-1094', 'scene-1100')
MINI_VAL = ('scene-0103', 'scene-0916')
LOCATIONS = ('singapore-onenorth', 'boston-seaport', 'singapore-queenstown',
             'singapore-hollandvillage')


def scene_specs(num_train: int, num_val: int, seed: int) -> list:
    """Names and logs of the scenes: the first ``num_train`` of ``mini_train``
    and the first ``num_val`` of ``mini_val``.

    Args:
        num_train: Training scenes, 1 to 8.
        num_val: Validation scenes, 1 to 2.
        seed: Shifts the capture dates.

    Returns:
        A :class:`SceneSpec` per scene.
    """
    if not (1 <= num_train <= len(MINI_TRAIN) and 1 <= num_val <= len(MINI_VAL)):
        raise InputError(f'--train-scenes, --val-scenes: v1.0-mini has {len(MINI_TRAIN)} train '
                         f'and {len(MINI_VAL)} val scenes; asked for {num_train} train and '
                         f'{num_val} val')
    specs = []
    for i, name in enumerate(MINI_TRAIN[:num_train] + MINI_VAL[:num_val]):
        day = 1 + (seed + i) % 28
        log = f'n{8 + 7 * (i % 2):03d}-2018-08-{day:02d}-{10 + i % 8:02d}-{(7 * i) % 60:02d}-00+0800'
        start = 1533081600_000000 + (seed % 1000) * 86_400_000_000 + i * 3_600_000_000
        specs.append(SceneSpec(name, log, log[:4], LOCATIONS[i % len(LOCATIONS)],
                               log[5:15], start))
    return specs


def write_nuscenes(root: str, options: Options, num_train: int = 8, num_val: int = 2,
                   progress: bool = True) -> None:
    """Writes a synthetic nuScenes v1.0-mini dataset into ``root``.

    Args:
        root: Output folder (created; it should be new or empty).
        options: Generation settings.
        num_train: Scenes of ``mini_train`` to generate.
        num_val: Scenes of ``mini_val`` to generate.
        progress: Show a progress bar.
    """
    image, road_map = placeholder_images()
    writer = TableWriter(NUSCENES, root, options, image)
    specs = scene_specs(num_train, num_val, options.seed)
    bar = tqdm(total=len(specs) * options.samples_per_scene, unit='sample',
                               desc='nuScenes samples', disable=not progress)
    for index, spec in enumerate(specs):
        writer.add_scene(spec, index, bar)
    bar.close()
    writer.finish(os.path.join(root, VERSION), road_map)
