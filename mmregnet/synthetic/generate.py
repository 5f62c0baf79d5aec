"""Generates a synthetic dataset and its info files, all or nothing.

Everything is written into a staging folder next to the target and renamed
into place at the end, so an interrupted run never leaves a half dataset
under the target name. A finished dataset carries a ``synthetic.json`` with
its settings; asking again for the same settings reuses it.
"""
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Dict

from .infos import create_infos
from .lyft import write_lyft
from .nuscenes import write_nuscenes
from .writer import Options

MARKER = 'synthetic.json'


@dataclass(frozen=True)
class DatasetSpec:
    """Everything that determines a generated dataset.

    Attributes:
        dataset: ``'nuscenes'`` or ``'lyft'``.
        options: Generation settings.
        scenes: Scenes per split: ``train``, ``val`` (and ``test`` for Lyft).
        max_sweeps: Sweeps per key frame recorded in the info files.
    """

    dataset: str
    options: Options = field(default_factory=Options)
    scenes: Dict[str, int] = field(default_factory=lambda: dict(train=8, val=2, test=1))
    max_sweeps: int = 10

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
    elif spec.dataset == 'lyft':
        write_lyft(root, spec.options, scenes['train'], scenes['val'], scenes.get('test', 1),
                   progress)
    else:
        raise ValueError(f"dataset must be 'nuscenes' or 'lyft', got {spec.dataset!r}")


def read_marker(root: str) -> dict:
    """The settings a finished synthetic dataset was generated with ({} if none)."""
    path = os.path.join(root, MARKER)
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


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
    """
    wanted = dict(spec.to_dict(), infos=infos)
    if os.path.exists(root):
        if read_marker(root) == wanted:
            return False
        raise FileExistsError(f'{root} exists and is not a synthetic dataset generated with '
                              f'these settings ({wanted}); choose another folder or remove it')
    parent = os.path.dirname(os.path.abspath(root))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f'.{os.path.basename(root)}.partial-', dir=parent)
    try:
        write_dataset(spec, staging, progress)
        if infos:
            create_infos(spec.dataset, staging, spec.max_sweeps, quiet=not progress)
        with open(os.path.join(staging, MARKER), 'w') as f:
            json.dump(wanted, f, indent=1)
        os.rename(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return True
