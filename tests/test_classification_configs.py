"""The ImageNet classification configs: every one builds through mmpretrain's registry with
the parameter count of mmregnet's analytic complexity; the 8 that mmpretrain ships build the
same classifier (keys and shapes) with mmpretrain's own RegNet and keep its recipe; the others
take pycls's recipe; the -tv configs fit torchvision's and timm's models; the table is fresh."""
import functools
import glob
import os
import re
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from mmregnet import PRESETS, complexity
from mmregnet.arch import get_arch
from mmregnet.classification import WEIGHT_SOURCE_ORDER, input_normalization

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDER = os.path.join(ROOT, 'configs', 'classification')
CONFIGS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(FOLDER, '*.py')))
MMPRETRAIN_REGNET = os.path.join(
    os.path.dirname(__import__('mmpretrain').__file__), '.mim', 'configs', 'regnet')
SHIPPED = sorted(os.path.basename(p) for p in glob.glob(os.path.join(MMPRETRAIN_REGNET, '*.py')))
#: pycls's configs/dds_baselines (8 GPUs): total batch and lr per preset.
PYCLS_RECIPE = {**{f'regnet{t}_{s}': (1024, 0.8) for t in 'xy'
                   for s in ('200mf', '400mf', '600mf', '800mf', '1.6gf')},
                **{f'regnet{t}_{s}': (512, 0.4) for t in 'xy'
                   for s in ('3.2gf', '4.0gf', '6.4gf', '8.0gf', '12gf')},
                'regnetx_16gf': (512, 0.4), 'regnetx_32gf': (256, 0.2),
                'regnety_16gf': (256, 0.2), 'regnety_32gf': (256, 0.2)}
_NAME = re.compile(r'^(regnet[xy])-([0-9.]+[mg]f)(-tv)?_8xb(\d+)(-rgb)?_in1k\.py$')


@functools.lru_cache(maxsize=None)
def _load(name, folder=FOLDER):
    """The config, loaded once (resolving 'mmpretrain::' bases is slow); tests only read it."""
    return Config.fromfile(os.path.join(folder, name))


def _build(cfg):
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope(cfg.default_scope), torch.device('meta'):
        return MODELS.build(cfg.model)


def _preset(name):
    kind, size = _NAME.match(name).group(1, 2)
    return f'{kind}_{size}'


def _without_scope_marks(value):
    """A config value without the ``_scope_`` keys mmengine adds to inherited dicts."""
    if isinstance(value, dict):
        return {k: _without_scope_marks(v) for k, v in value.items() if k != '_scope_'}
    if isinstance(value, (list, tuple)):
        return [_without_scope_marks(v) for v in value]
    return value


def test_every_preset_has_its_configs():
    main = sorted(c for c in CONFIGS if _NAME.match(c) and '-rgb' not in c)
    assert sorted(map(_preset, main)) == sorted(PRESETS)
    for name in main:
        assert name.replace('_in1k', '-rgb_in1k') in CONFIGS
    assert set(SHIPPED) <= set(CONFIGS) and len(SHIPPED) == 8


@pytest.mark.slow
@pytest.mark.parametrize('name', CONFIGS)
def test_builds_with_the_analytic_parameter_count_and_states_its_input(name):
    cfg = _load(name)
    assert cfg.default_scope == 'mmpretrain'
    model = _build(cfg)
    assert type(model).__name__ == 'ImageClassifier'
    assert type(model.backbone).__module__ == 'mmregnet.models.regnet'
    arch = cfg.model.backbone.arch
    expected = complexity(arch, num_classes=cfg.model.head.num_classes)['params']
    assert sum(p.numel() for p in model.parameters()) == expected
    assert model.head.fc.in_features == get_arch(arch).design().widths[-1]
    # The colour order and normalisation its weights expect: RGB only for -rgb configs.
    preprocessor = cfg.data_preprocessor
    normalization = input_normalization('RGB' if '-rgb' in name else 'BGR')
    assert (list(preprocessor.mean), list(preprocessor.std), preprocessor.to_rgb) == (
        normalization['mean'], normalization['std'], normalization['to_rgb'])
    assert preprocessor.num_classes == cfg.model.head.num_classes


def test_normalisation_is_imagenet_in_each_order():
    # mmpretrain's own RGB default and its RegNet configs' BGR statistics, independently.
    rgb = Config.fromfile(os.path.join(MMPRETRAIN_REGNET, '..', '_base_', 'datasets',
                                       'imagenet_bs32.py')).data_preprocessor
    bgr = _load('regnetx-400mf_8xb128_in1k.py', MMPRETRAIN_REGNET).data_preprocessor
    for order, reference in (('RGB', rgb), ('BGR', bgr)):
        ours = input_normalization(order)
        assert (ours['mean'], ours['std'], ours['to_rgb']) == (
            list(reference.mean), list(reference.std), reference.to_rgb)
    assert {WEIGHT_SOURCE_ORDER[s] for s in ('pycls', 'mmpretrain')} == {'BGR'}
    assert {WEIGHT_SOURCE_ORDER[s] for s in ('timm', 'torchvision')} == {'RGB'}


@pytest.mark.slow
@pytest.mark.parametrize('name', SHIPPED)
def test_same_classifier_and_recipe_as_mmpretrain(name):
    ours, theirs = _load(name), _load(name, MMPRETRAIN_REGNET)
    assert type(_build(theirs).backbone).__module__.startswith('mmpretrain.')
    shapes = [{k: tuple(v.shape) for k, v in _build(c).state_dict().items()}
              for c in (ours, theirs)]
    assert shapes[0] == shapes[1]
    ours_dict, theirs_dict = (_without_scope_marks(c.to_dict()) for c in (ours, theirs))
    assert ours_dict.pop('custom_imports')['imports'] == ['mmregnet']
    ours_backbone, theirs_backbone = (d['model'].pop('backbone') for d in (ours_dict, theirs_dict))
    assert ours_backbone['arch'] == theirs_backbone['arch']
    assert ours_dict == theirs_dict


@pytest.mark.parametrize('name', [c for c in CONFIGS if _NAME.match(c) and '-rgb' not in c])
def test_training_recipe_is_pyclss(name):
    cfg = _load(name)
    batch, lr = PYCLS_RECIPE[_preset(name)]
    assert 8 * cfg.train_dataloader.batch_size == batch == cfg.auto_scale_lr.base_batch_size
    assert int(_NAME.match(name).group(4)) == cfg.train_dataloader.batch_size
    assert cfg.optim_wrapper.optimizer.lr == lr
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.momentum, optimizer.nesterov, optimizer.weight_decay) == (
        'SGD', 0.9, True, 5e-5)
    assert cfg.train_cfg.max_epochs == 100
    assert [h.type for h in cfg.custom_hooks] == ['PreciseBNHook']


def _torchvision_preset(builder):
    kind, size = re.match(r'regnet_([xy])_(\w+)', builder).groups()
    size = size.replace('_', '.')
    size = {'8gf': '8.0gf'}.get(size, size)
    return f'regnet{kind}_{size}'


# torchvision's builders of presets in the table (all but the 128GF one), small ones first.
TORCHVISION = ['regnet_x_400mf', 'regnet_y_400mf', 'regnet_x_800mf', 'regnet_y_800mf',
               'regnet_x_1_6gf', 'regnet_y_1_6gf', 'regnet_x_3_2gf', 'regnet_y_8gf']


@pytest.mark.slow
@pytest.mark.parametrize('builder', TORCHVISION)
def test_rgb_or_tv_config_fits_torchvisions_model(builder):
    torchvision = pytest.importorskip('torchvision')
    preset = _torchvision_preset(builder)
    kind, size = preset.split('_')
    batch = _NAME.match(next(c for c in CONFIGS if c.startswith(f'{kind}-{size}_'))).group(4)
    tv_name = f'{kind}-{size}-tv_8xb{batch}-rgb_in1k.py'
    name = tv_name if tv_name in CONFIGS else f'{kind}-{size}_8xb{batch}-rgb_in1k.py'
    reference = getattr(torchvision.models, builder)()
    ours = _build(_load(name))
    assert reference.fc.in_features == ours.head.fc.in_features
    assert sum(p.numel() for p in reference.parameters()) == sum(
        p.numel() for p in ours.parameters())
    # The -tv variant exists exactly where pycls's rounding would not fit torchvision's model.
    plain = _build(_load(f'{kind}-{size}_8xb{batch}-rgb_in1k.py'))
    assert (name == tv_name) == (sum(p.numel() for p in plain.parameters())
                                 != sum(p.numel() for p in reference.parameters()))


@pytest.mark.slow
@pytest.mark.parametrize('model_name, config', [
    ('regnetx_004_tv', 'regnetx-400mf-tv_8xb128-rgb_in1k.py'),
    ('regnety_008_tv', 'regnety-800mf-tv_8xb128-rgb_in1k.py'),
    ('regnety_080_tv', 'regnety-8.0gf-tv_8xb64-rgb_in1k.py')])
def test_tv_configs_fit_timms_tv_models(model_name, config):
    timm = pytest.importorskip('timm')
    reference = timm.create_model(model_name, pretrained=False)
    ours = _build(_load(config))
    assert sum(p.numel() for p in reference.parameters()) == sum(
        p.numel() for p in ours.parameters())


def test_table_is_fresh():
    sys.path.insert(0, os.path.join(ROOT, 'tools', 'misc'))
    try:
        import classification_index
    finally:
        sys.path.pop(0)
    rows = classification_index.config_rows(
        lambda path: _load(os.path.basename(path), os.path.dirname(path)))
    with open(classification_index.README) as f:
        readme = f.read()
    # What the generator would write is what is committed (its --check compares the same).
    assert classification_index._with_table(
        readme, classification_index.render_table(rows)) == readme
    rows = {r['arch']: r for r in rows}
    assert list(rows) == list(PRESETS)
    # Published numbers only where mmpretrain ships the config, and read from its metafile.
    assert {a for a, r in rows.items() if r['published']} == {_preset(n) for n in SHIPPED}
    assert rows['regnetx_400mf']['published']['Top 1 Accuracy'] == 72.56
    assert rows['regnetx_400mf']['params'] == 5157512
