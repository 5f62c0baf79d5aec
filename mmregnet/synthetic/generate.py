"""Generates a synthetic dataset and its info files, all or nothing.

Everything is written into a staging folder next to the target
(:func:`mmregnet.fileio.atomic_folder`) and renamed into place at the end, so
an interrupted run (an error, Ctrl-C, SIGTERM) never leaves a half dataset
under the target name, and the staging folder is removed; one left by a
killed run is removed by the next run. A finished dataset carries a
``synthetic.json`` with its settings; asking again for the same settings
reuses it.
"""
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from typing import Dict

from ..checks import check_int
from ..errors import InputError
from ..fileio import atomic_folder, remove_stale_parts
from .infos import create_infos
from .lyft import write_lyft
from .nuscenes import scene_specs, write_nuscenes
from .options import LIMITS, Options

MARKER = 'synthetic.json'
DATASETS = ('nuscenes', 'lyft')
#: Most scenes per split (Lyft's real train split has 180).
MAX_SCENES = 1000
_SCENE_FLAGS = dict(train='--train-scenes', val='--val-scenes', test='--test-scenes')


@dataclass(frozen=True)
class DatasetSpec:
    """Everything that determines a generated dataset, checked when it is made.

    Attributes:
        dataset: ``'nuscenes'`` or ``'lyft'``.
        options: Generation settings.
        scenes: Scenes per split: ``train``, ``val`` (and ``test`` for Lyft),
            each 1 to :data:`MAX_SCENES` (nuScenes: at most 8 and 2, the
            v1.0-mini names).
        max_sweeps: Sweeps per key frame recorded in the info files (0 to 30).

    Raises:
        InputError: A setting out of bounds (a ``ValueError`` naming the
            command-line option, the rule and the value).
    """

    dataset: str
    options: Options = field(default_factory=Options)
    scenes: Dict[str, int] = field(default_factory=lambda: dict(train=8, val=2, test=1))
    max_sweeps: int = 10

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise InputError(f"dataset must be 'nuscenes' or 'lyft', got {self.dataset!r}")
        if not isinstance(self.options, Options):
            raise InputError(f'options must be an Options, got {type(self.options).__name__}')
        splits = ('train', 'val', 'test') if self.dataset == 'lyft' else ('train', 'val')
        for split in splits:
            check_int(f'{_SCENE_FLAGS[split]} ({split} scenes)', self.scenes.get(split), 1,
                      MAX_SCENES)
        if self.dataset == 'nuscenes':
            scene_specs(self.scenes['train'], self.scenes['val'], 0)  # the mini split's limits
        check_int('--max-sweeps', self.max_sweeps, 0, LIMITS['sweeps_per_sample'][1])

    def to_dict(self) -> dict:
        """The spec as plain JSON-able data."""
        return asdict(self)


def write_dataset(spec: DatasetSpec, root: str, progress: bool = True) -> None:
    """Writes the raw dataset (tables and files, no infos) into ``root``.

    Args:
        spec: What to generate.
        root: Output folder.
        progress: Show a progress bar.
    """
    scenes = spec.scenes
    if spec.dataset == 'nuscenes':
        write_nuscenes(root, spec.options, scenes['train'], scenes['val'], progress)
    else:
        write_lyft(root, spec.options, scenes['train'], scenes['val'], scenes['test'], progress)


def read_marker(root: str) -> dict:
    """The settings a finished synthetic dataset was generated with ({} if none)."""
    path = os.path.join(root, MARKER)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path) as f:
            marker = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return marker if isinstance(marker, dict) else {}


def check_root(root: str) -> None:
    """Refuses a target that cannot become a dataset folder, before any work.

    Raises:
        InputError: ``root`` is a dangling symbolic link, or a file.
    """
    if os.path.islink(root) and not os.path.exists(root):
        raise InputError(f'--root {root} is a symbolic link to {os.readlink(root)!r}, which '
                         'does not exist; remove the link or give another folder')
    if os.path.exists(root) and not os.path.isdir(root):
        raise InputError(f'--root {root} is a file; give a folder path')


def generate(spec: DatasetSpec, root: str, progress: bool = True, infos: bool = True) -> bool:
    """Generates the dataset and (optionally) its info files into ``root``.

    Args:
        spec: What to generate.
        root: Target folder; must not exist, or hold a dataset generated with
            the same spec (then nothing is done).
        progress: Show progress bars and the converter's output.
        infos: Also run mmdet3d's converter to write the info files.

    Returns:
        True if a dataset was generated, False if an identical one was reused.

    Raises:
        FileExistsError: ``root`` exists and is not this spec's dataset.
        InputError: ``root`` is a dangling link or a file.
    """
    wanted = dict(spec.to_dict(), infos=infos)
    check_root(root)
    if os.path.exists(root):
        if read_marker(root) == wanted:
            return False
        raise FileExistsError(f'{root} exists and is not a synthetic dataset generated with '
                              f'these settings ({wanted}); choose another folder or remove it')
    os.makedirs(os.path.dirname(os.path.abspath(root)), exist_ok=True)
    for stale in remove_stale_parts(root):
        print(f'removed {stale}, a staging folder left by a killed run', file=sys.stderr)
    with atomic_folder(root) as staging:
        write_dataset(spec, staging, progress)
        if infos:
            create_infos(spec.dataset, staging, spec.max_sweeps, quiet=not progress)
        with open(os.path.join(staging, MARKER), 'w') as f:
            json.dump(wanted, f, indent=1)
    return True
