"""The generated bars dataset: each bar lies at its class's angle (measured from the pixels),
the files are the same for the same options, mmpretrain's CustomDataset reads the folder with
the intended labels, and the generator reuses, refuses and rejects as documented."""
import os
import subprocess
import sys

import numpy as np
import pytest

from mmregnet.synthetic.images import (CLASSES, ImageSetSpec, generate_images, image_seed,
                                       render_bar)

from test_synthetic import _digest  # every file's path and bytes under a folder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ImageSetSpec(image_size=24, train_per_class=3, val_per_class=2, seed=5)


def _orientation(image):
    """The bar's angle in degrees (0..180, counter-clockwise), from its pixels' second moments."""
    pixels = image.astype(float)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    background = np.median(border, axis=0)
    mask = np.abs(pixels - background).max(axis=2) > 50
    rows, cols = np.nonzero(mask)
    x, y = cols - cols.mean(), -(rows - rows.mean())  # y up
    cov = np.cov(np.stack([x, y]))
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    major = eigenvectors[:, np.argmax(eigenvalues)]
    return np.degrees(np.arctan2(major[1], major[0])) % 180


@pytest.mark.parametrize('label, name', list(enumerate(CLASSES)))
def test_bars_lie_at_their_class_angle(label, name):
    spec = ImageSetSpec(image_size=64)
    for index in range(5):
        image = render_bar(CLASSES[name], 64, image_seed(spec, 'train', label, index))
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        error = abs((_orientation(image) - CLASSES[name] + 90) % 180 - 90)
        assert error < 12, (name, index, _orientation(image))  # jitter 8 plus pixelation


def test_same_options_same_bytes_and_reuse(tmp_path):
    a, b = str(tmp_path / 'a'), str(tmp_path / 'b')
    assert generate_images(TINY, a) and generate_images(TINY, b)
    assert _digest(a) == _digest(b)
    other = str(tmp_path / 'c')
    generate_images(ImageSetSpec(24, 3, 2, seed=6), other)
    assert _digest(other) != _digest(a)
    # The same options again: the folder is reused untouched; other options: refused.
    assert generate_images(TINY, a) is False and _digest(a) == _digest(b)
    with pytest.raises(FileExistsError, match='not a bars dataset generated with these'):
        generate_images(ImageSetSpec(24, 4, 2, seed=5), a)
    assert sorted(os.listdir(tmp_path)) == ['a', 'b', 'c']  # no temporaries left


def test_mmpretrain_reads_the_folders_with_the_labels(tmp_path):
    from mmpretrain.datasets import CustomDataset
    root = str(tmp_path / 'bars')
    generate_images(TINY, root)
    for split, count in (('train', 3), ('val', 2)):
        dataset = CustomDataset(data_root=root, data_prefix=split, pipeline=[])
        assert dataset.metainfo['classes'] == tuple(CLASSES)
        assert len(dataset) == count * len(CLASSES)
        for i in range(len(dataset)):
            info = dataset.get_data_info(i)
            folder = os.path.basename(os.path.dirname(info['img_path']))
            assert list(CLASSES).index(folder) == info['gt_label']


@pytest.mark.parametrize('field, value', [('image_size', 8), ('image_size', 4096),
                                          ('train_per_class', 0), ('val_per_class', -1),
                                          ('seed', -1), ('image_size', 32.0)])
def test_bad_spec_names_the_field_the_rule_and_the_value(field, value):
    with pytest.raises(ValueError, match=f'{field} must be an integer in .*got {value!r}'):
        ImageSetSpec(**{field: value})


def test_tool_writes_reuses_and_rejects(tmp_path):
    def tool(*args):
        return subprocess.run([sys.executable, os.path.join(REPO, 'tools',
                                                            'create_synthetic_images.py'), *args],
                              capture_output=True, text=True)
    root = str(tmp_path / 'bars')
    small = ['--root', root, '--image-size', '16', '--train-per-class', '2',
             '--val-per-class', '1']
    first = tool(*small)
    assert first.returncode == 0 and first.stdout.startswith('generated')
    assert len(os.listdir(os.path.join(root, 'train', 'bar045'))) == 2
    again = tool(*small)
    assert again.returncode == 0 and again.stdout.startswith('reusing')
    refused = tool(*small[:-1], '3')
    assert refused.returncode == 1 and 'not a bars dataset' in refused.stderr
    bad = tool('--root', str(tmp_path / 'x'), '--image-size', '8')
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
    assert 'image_size must be an integer in 16..1024, got 8' in bad.stderr
    assert not os.path.exists(tmp_path / 'x')
