"""A small image-classification dataset in ImageFolder format: coloured bars.

``root/{train,val}/<class>/<class>_<index>.png``, one folder per class, the
layout mmpretrain's ``CustomDataset`` (and torchvision's ``ImageFolder``)
read. Each image is one filled bar of a random colour, length, thickness and
position on a noisy background of another colour; the class is the bar's
orientation (0, 45, 90 or 135 degrees), so a classifier cannot learn it from
colour statistics, while a tiny CNN learns it within a few hundred steps
(shape classes at random rotations need far more). A horizontal flip swaps
the 45 and 135 degree classes, so training pipelines must not flip these
images.

Every image is drawn from its own random stream, seeded by ``(seed, split,
class, index)``, so the bytes depend only on the spec, not on the order of
writing or on how many other images there are.

Example:
    >>> image = render_bar(45, 32, np.random.default_rng(0))
    >>> image.shape, image.dtype
    ((32, 32, 3), dtype('uint8'))
"""
import json
import os
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import InputError
from ..fileio import atomic_folder

#: The classes (folder names, in the order mmpretrain assigns labels: sorted)
#: and the orientation of their bars in degrees, counter-clockwise.
CLASSES = {'bar000': 0.0, 'bar045': 45.0, 'bar090': 90.0, 'bar135': 135.0}
_ANGLE_JITTER = 8.0
SPLITS = ('train', 'val')
MARKER = 'synthetic.json'
_MIN_IMAGE_SIZE, _MAX_IMAGE_SIZE = 16, 1024
_MAX_PER_CLASS = 100_000


@dataclass(frozen=True)
class ImageSetSpec:
    """Everything that determines a generated bars dataset.

    Attributes:
        image_size: Side of the square images, in pixels (16..1024).
        train_per_class: Training images per class (at most 100000).
        val_per_class: Validation images per class (at most 100000).
        seed: Seed of every image's random stream.
    """

    image_size: int = 32
    train_per_class: int = 256
    val_per_class: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        for name, low, high in (('image_size', _MIN_IMAGE_SIZE, _MAX_IMAGE_SIZE),
                                ('train_per_class', 1, _MAX_PER_CLASS),
                                ('val_per_class', 1, _MAX_PER_CLASS), ('seed', 0, 2 ** 63 - 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise InputError(f'bars dataset {name} must be an integer in {low}..{high}, '
                                 f'got {value!r}')

    def per_class(self, split: str) -> int:
        """Images per class in ``split`` (``'train'`` or ``'val'``)."""
        return self.train_per_class if split == 'train' else self.val_per_class


def render_bar(angle_deg: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """Draws one image: a filled bar at about ``angle_deg`` on a noisy background.

    The bar's colour, the background's, its length, thickness and centre are
    random; its orientation is ``angle_deg`` (counter-clockwise from the
    horizontal) give or take a few degrees.

    Args:
        angle_deg: The bar's orientation in degrees.
        size: Side of the image in pixels.
        rng: The image's random stream.

    Returns:
        An ``(size, size, 3)`` uint8 RGB array.
    """
    background = rng.uniform(0, 255, 3)
    # A foreground far enough from the background in colour that the bar is visible.
    foreground = rng.uniform(0, 255, 3)
    while np.abs(foreground - background).max() < 80:
        foreground = rng.uniform(0, 255, 3)
    half_length = rng.uniform(0.28, 0.42) * size
    half_width = rng.uniform(0.06, 0.11) * size
    centre = rng.uniform(0.3 * size, 0.7 * size, 2)
    angle = np.deg2rad(angle_deg + rng.uniform(-_ANGLE_JITTER, _ANGLE_JITTER))
    grid = np.arange(size) + 0.5
    x, y = np.meshgrid(grid - centre[0], centre[1] - grid)  # y up, as the angle counts
    along = np.cos(angle) * x + np.sin(angle) * y
    across = -np.sin(angle) * x + np.cos(angle) * y
    mask = (np.abs(along) <= half_length) & (np.abs(across) <= half_width)
    image = np.where(mask[..., None], foreground, background)
    image = image + rng.normal(0, 12, image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def image_seed(spec: ImageSetSpec, split: str, label: int, index: int) -> np.random.Generator:
    """The random stream of one image, independent of every other image's."""
    return np.random.default_rng([spec.seed, SPLITS.index(split), label, index])


def write_images(spec: ImageSetSpec, root: str) -> int:
    """Writes the dataset's PNG files into the existing folder ``root``.

    Args:
        spec: What to generate.
        root: Output folder (must exist).

    Returns:
        The number of images written.
    """
    from PIL import Image  # lazy: Pillow, only for camera images
    count = 0
    for split in SPLITS:
        for label, (name, angle) in enumerate(CLASSES.items()):
            folder = os.path.join(root, split, name)
            os.makedirs(folder)
            for index in range(spec.per_class(split)):
                pixels = render_bar(angle, spec.image_size, image_seed(spec, split, label, index))
                Image.fromarray(pixels).save(os.path.join(folder, f'{name}_{index:04d}.png'))
                count += 1
    return count


def read_image_marker(root: str) -> dict:
    """The settings a finished bars dataset was generated with ({} if none)."""
    path = os.path.join(root, MARKER)
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def generate_images(spec: ImageSetSpec, root: str) -> bool:
    """Generates the bars dataset into ``root``, all or nothing.

    Args:
        spec: What to generate.
        root: Target folder; must not exist, or hold a dataset generated with
            the same spec (then nothing is done). Its parent folders are created.

    Returns:
        True if a dataset was generated, False if an identical one was reused.

    Raises:
        FileExistsError: ``root`` exists and is not this spec's dataset.
    """
    wanted = dict(asdict(spec), dataset='bars', classes=list(CLASSES))
    if os.path.lexists(root):
        if os.path.isdir(root) and read_image_marker(root) == wanted:
            return False
        raise FileExistsError(f'{root} exists and is not a bars dataset generated with these '
                              f'settings ({wanted}); choose another folder or remove it')
    os.makedirs(os.path.dirname(os.path.abspath(root)), exist_ok=True)
    with atomic_folder(root) as staging:
        write_images(spec, staging)
        with open(os.path.join(staging, MARKER), 'w') as f:
            json.dump(wanted, f, indent=1)
    return True
