"""The settings of a generated dataset, checked when they are made."""
from dataclasses import dataclass

from ..checks import check_int, check_real

#: Bounds of the integer settings: far beyond real data (a nuScenes scene has 40
#: key frames, about 9 sweeps between them and up to a few hundred objects; its
#: LiDAR fires about 1080 times per revolution), and low enough that no setting
#: can exhaust the machine.
LIMITS = dict(samples_per_scene=(1, 1000), sweeps_per_sample=(0, 30),
              objects_per_scene=(1, 1000), azimuth_steps=(1, 10000), seed=(0, 2 ** 32 - 1))
#: Largest annotation and LiDAR range (m); real LiDARs reach about 100-200 m.
MAX_RANGE = 1000.0
#: The command-line option of each setting, named in messages.
OPTION_FLAGS = dict(samples_per_scene='--samples-per-scene', sweeps_per_sample='--sweeps',
                    annotation_range='--annotation-range', objects_per_scene='--objects-per-scene',
                    seed='--seed', azimuth_steps='--azimuth-steps', max_range='--max-range')


@dataclass(frozen=True)
class Options:
    """Size and sensor settings of a generated dataset.

    Each setting is checked when the options are made (:data:`LIMITS`,
    :data:`MAX_RANGE`); a bad one raises :class:`~mmregnet.errors.InputError`
    naming its command-line option.

    Attributes:
        samples_per_scene: Annotated key frames per scene.
        sweeps_per_sample: LiDAR sweeps recorded before each key frame (after the first).
        annotation_range: Objects are annotated while their centre lies within
            this distance (m) of the LiDAR along both x and y.
        objects_per_scene: Placement attempts for objects.
        seed: Seed of every random draw.
        azimuth_steps: LiDAR firings per revolution and beam (fewer: smaller scans).
        max_range: LiDAR range (m).
    """

    samples_per_scene: int = 10
    sweeps_per_sample: int = 2
    annotation_range: float = 50.0
    objects_per_scene: int = 40
    seed: int = 0
    azimuth_steps: int = 1080
    max_range: float = 70.0

    def __post_init__(self) -> None:
        for name, (low, high) in LIMITS.items():
            check_int(f'{OPTION_FLAGS[name]} ({name})', getattr(self, name), low, high)
        for name in ('annotation_range', 'max_range'):
            check_real(f'{OPTION_FLAGS[name]} ({name}, m)', getattr(self, name), 0.0,
                       MAX_RANGE, low_open=True)
