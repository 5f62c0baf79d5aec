"""mmregnet's registries need only one OpenMMLab model package: with mmdet and mmdet3d
absent (the ``[cls]`` extra), they hang under mmpretrain's, and an mmpretrain
``ImageClassifier`` builds and runs with ``mmregnet.RegNet``."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLS_ONLY = r'''
import sys
sys.modules.update(dict.fromkeys(('mmdet', 'mmdet3d')))  # as if not installed: imports fail
import torch
import mmregnet.models
from mmpretrain.registry import MODELS
from mmregnet.registry import PARENT_MODELS
assert PARENT_MODELS is MODELS, PARENT_MODELS
model = MODELS.build(dict(
    type='ImageClassifier',
    backbone=dict(type='mmregnet.RegNet', arch='regnetx_200mf', out_indices=(3,)),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=5, in_channels=368)))
model.init_weights()
assert type(model.backbone) is mmregnet.models.RegNet
scores = model.eval()(torch.rand(2, 3, 64, 64), mode='tensor')
assert scores.shape == (2, 5), scores.shape
assert not [m for m in sys.modules if m.startswith(('mmdet.', 'mmdet3d.'))]
print('BUILT')
'''


def test_an_mmpretrain_classifier_builds_with_neither_mmdet_nor_mmdet3d():
    result = subprocess.run([sys.executable, '-c', CLS_ONLY], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0 and 'BUILT' in result.stdout, result.stderr[-3000:]


def test_without_any_parent_package_the_error_names_the_extras():
    code = ("import sys; sys.modules.update(dict.fromkeys(('mmdet', 'mmdet3d', 'mmpretrain')))\n"
            'import mmregnet.models')
    result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 1
    assert 'need one of mmdet3d, mmdet, mmpretrain' in result.stderr, result.stderr[-3000:]
    assert 'mmregnet[3d]' in result.stderr, result.stderr[-3000:]
