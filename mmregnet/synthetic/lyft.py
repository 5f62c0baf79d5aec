"""The Lyft Level 5 writer: the v1.01 layout with train/val/test split files.

Layout under the root: ``v1.01-train/v1.01-train/*.json`` (tables),
``v1.01-train/lidar/*.bin`` (float32 rows of x, y, z, intensity, ring),
``v1.01-train/images/*.jpeg`` (placeholders), ``v1.01-train/maps/*.png``, the
same for ``v1.01-test`` (no annotation tables), and ``train.txt``,
``val.txt``, ``test.txt`` naming the scenes of each split, as mmdet3d's Lyft
converter and metric read them.
"""
import dataclasses
import os

from tqdm import tqdm

from .formats import LYFT
from .writer import Options, SceneSpec, TableWriter, placeholder_images

TRAIN_VERSION, TEST_VERSION = 'v1.01-train', 'v1.01-test'


def scene_specs(count: int, seed: int, first: int = 0, annotated: bool = True) -> list:
    """Lyft-style scene specs: ``host-aNNN-lidar0-<start>-<end>`` names.

    Args:
        count: Number of scenes.
        seed: Shifts the timestamps.
        first: Index of the first scene (keeps names unique across versions).
        annotated: Whether the scenes get annotations.

    Returns:
        A :class:`SceneSpec` per scene.
    """
    specs = []
    for i in range(first, first + count):
        host = f'host-a{101 + i % 7:03d}'
        start = 1_230_000_000_000_000 + (seed % 1000) * 86_400_000_000 + i * 3_600_000_000
        name = f'{host}-lidar0-{start}-{start + 25_000_000}'
        specs.append(SceneSpec(name, host, host[5:], 'Palo Alto', '2019-01-15', start,
                               annotated))
    return specs


def write_lyft(root: str, options: Options, num_train: int = 6, num_val: int = 2,
               num_test: int = 1, progress: bool = True) -> None:
    """Writes a synthetic Lyft v1.01 dataset (train and test versions) into ``root``.

    Args:
        root: Output folder (created; it should be new or empty).
        options: Generation settings (``sweeps_per_sample`` is ignored: every
            Lyft LiDAR frame is a key frame).
        num_train: Training scenes.
        num_val: Validation scenes (part of ``v1.01-train``).
        num_test: Test scenes (``v1.01-test``, no annotations).
        progress: Show a progress bar.
    """
    if min(num_train, num_val, num_test) < 1:
        raise ValueError(f'each split needs a scene, got train={num_train}, val={num_val}, '
                         f'test={num_test}')
    image, road_map = placeholder_images()
    options = dataclasses.replace(options, sweeps_per_sample=0)
    trainval = scene_specs(num_train + num_val, options.seed)
    test = scene_specs(num_test, options.seed, num_train + num_val, annotated=False)
    bar = tqdm(total=(len(trainval) + len(test)) * options.samples_per_scene, unit='sample',
               desc='Lyft samples', disable=not progress)
    for version, specs, offset in ((TRAIN_VERSION, trainval, 0), (TEST_VERSION, test, len(trainval))):
        data_path = os.path.join(root, version)
        writer = TableWriter(LYFT, data_path, options, image)
        for index, spec in enumerate(specs):
            writer.add_scene(spec, offset + index, bar)
        writer.finish(os.path.join(data_path, version), road_map, annotated=version == TRAIN_VERSION)
    bar.close()
    splits = dict(train=trainval[:num_train], val=trainval[num_train:], test=test)
    for split, specs in splits.items():
        with open(os.path.join(root, f'{split}.txt'), 'w') as f:
            f.write(''.join(f'{s.name}\n' for s in specs))
