"""A RegNet classifier end to end with mmpretrain: tools/train.py trains the tiny config on the
generated bars dataset, tools/test.py reloads the checkpoint and reports mmpretrain's Accuracy
(well above chance, and equal to the accuracy measured at the end of training); the tools take
each config's default scope from the config itself."""
import json
import os
import re

import pytest
import torch
from mmengine.config import Config

from mmregnet.runtime.launch import save_untrained_checkpoint
from mmregnet.runtime.scope import config_scope
from mmregnet.synthetic.images import CLASSES, ImageSetSpec, generate_images

from test_end_to_end import REPO, _tool  # runs a tool with one thread, output captured

pytestmark = pytest.mark.slow  # trains and evaluates a classifier with the tools

TINY = os.path.join(REPO, 'configs', 'classification', 'regnetx-tiny_1xb32-6e_bars.py')
CHANCE = 100.0 / len(CLASSES)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    work = tmp_path_factory.mktemp('classification')
    data_root = str(work / 'bars')
    generate_images(ImageSetSpec(), data_root)
    data = [f'{loader}.dataset.data_root={data_root}'
            for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    result = _tool('train.py', TINY, '--work-dir', str(work / 'run'), '--cfg-options', *data,
                   check=False)
    assert result.returncode == 0, result.stdout[-4000:]
    return work, data, result.stdout


def test_train_reports_accuracy_and_test_reproduces_it_from_the_checkpoint(trained):
    work, data, log = trained
    val = re.findall(r'Epoch\(val\) \[6\]\[\d+/\d+\]\s+accuracy/top1: ([0-9.]+)', log)
    assert len(val) == 1, log[-3000:]
    checkpoint = str(work / 'run' / 'epoch_6.pth')
    metrics_path = str(work / 'metrics.json')
    result = _tool('test.py', TINY, checkpoint, '--work-dir', str(work / 'test'),
                   '--metrics-out', metrics_path, '--cfg-options', *data, check=False)
    assert result.returncode == 0, result.stdout[-4000:]
    with open(metrics_path) as f:
        metrics = json.load(f)
    assert set(metrics) == {'accuracy/top1'}
    # The reloaded weights give the accuracy the trained model had; 192 steps learn the
    # orientations far beyond chance (25%).
    assert metrics['accuracy/top1'] == pytest.approx(float(val[0]), abs=1e-3)
    assert metrics['accuracy/top1'] > 2 * CHANCE


def test_untrained_baseline_has_the_trained_checkpoints_keys(trained, tmp_path):
    work, _, _ = trained
    path = str(tmp_path / 'untrained.pth')
    save_untrained_checkpoint(TINY, path)
    from mmregnet.compat import allow_mmengine_checkpoints
    with allow_mmengine_checkpoints():
        untrained = torch.load(path, map_location='cpu')['state_dict']
        trained_state = torch.load(str(work / 'run' / 'epoch_6.pth'),
                                   map_location='cpu')['state_dict']
    assert {k: v.shape for k, v in untrained.items()} == {
        k: v.shape for k, v in trained_state.items()}
    assert any(k.startswith('backbone.layer3.') for k in untrained)
    assert untrained['head.fc.weight'].shape == (len(CLASSES), 64)


@pytest.mark.parametrize('config, scope', [
    ('configs/regnet/pointpillars_hv_regnet-400mf_fpn_sbn-all_8xb4-2x_nus-3d.py', 'mmdet3d'),
    ('configs/regnet/retinanet_regnetx-800MF_fpn_1x_coco.py', 'mmdet'),
    ('configs/classification/regnetx-tiny_1xb32-6e_bars.py', 'mmpretrain'),
    ('configs/classification/regnety-400mf_8xb128_in1k.py', 'mmpretrain')])
def test_scope_comes_from_the_config(config, scope):
    cfg = Config.fromfile(os.path.join(REPO, config))
    assert config_scope(cfg) == scope
    # Without default_scope: the scope mmengine recorded on an inherited model, else the one
    # package whose registry holds the model's type.
    cfg.pop('default_scope')
    assert config_scope(cfg) == scope
    cfg.model.pop('_scope_', None)
    assert config_scope(cfg) == scope


def test_unknown_scope_is_refused_with_the_fix(tmp_path):
    path = tmp_path / 'odd.py'
    path.write_text("model = dict(type='NoSuchModel')\n")
    with pytest.raises(ValueError, match=r"sets no default_scope and its model type "
                       r"'NoSuchModel' is in none of .*add default_scope"):
        config_scope(Config.fromfile(str(path)))
