"""``--keep-head`` into mmpretrain 1.2.0's ``ImageClassifier``, and mmpretrain's RegNet as a source.

Each source library's own classifier (random weights, random BN statistics, a random
classifier bias) is saved as users save it, converted with ``--keep-head``, loaded
strictly into an ``ImageClassifier`` with mmregnet's ``RegNet`` (GlobalAveragePooling
neck, LinearClsHead), and must give the library's logits (1e-4 of their largest value).
"""
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import load_checkpoint
from pycls.models.anynet import AnyNet

from mmregnet.convert import ConversionError, convert_checkpoint

from conftest import pycls_anynet_kwargs
from library_nets import assert_close_rel, library_net, load_converted, run_converter
from norms import randomize_norms

CONFIG = 'configs/classification/regnetx-400mf-tv_8xb128-rgb_in1k.py'


@pytest.fixture(scope='module')
def models():
    """mmpretrain's model registry, with mmpretrain as the default scope for this module's
    tests only: left current, it would give later tests' RegNets mmpretrain's defaults."""
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield MODELS


def _random_head(net, fc):
    with torch.no_grad():
        fc.bias.copy_(torch.randn(fc.bias.shape, generator=torch.Generator().manual_seed(3)))
    return net


def _source(library):
    if library == 'pycls':
        torch.manual_seed(0)
        net = randomize_norms(AnyNet(**pycls_anynet_kwargs('regnety_200mf'))).eval()
        return _random_head(net, net.head.fc)
    net = library_net(*library.split(':'))
    return _random_head(net, net.fc if hasattr(net, 'fc') else net.head.fc)


def classifier_cfg(meta, classes, width):
    """An ImageClassifier with mmregnet's RegNet for converted weights, as a config dict."""
    return dict(type='ImageClassifier',
                backbone=dict(type='mmregnet.RegNet', arch=meta['arch'], **meta['backbone'],
                              out_indices=(len(meta['stages']['widths']) - 1,)),
                neck=dict(type='GlobalAveragePooling'),
                head=dict(type='LinearClsHead', num_classes=classes, in_channels=width))


@pytest.mark.slow
@pytest.mark.parametrize('library', ['pycls', 'timm:regnety_002', 'timm:regnetx_004_tv',
                                     'torchvision:regnet_y_400mf'])
def test_keep_head_loads_strictly_into_an_image_classifier_with_the_librarys_logits(
        tmp_path, models, library):
    net = _source(library)
    torch.save(net.state_dict(), tmp_path / 'src.pth')
    out = run_converter(tmp_path / 'src.pth', tmp_path / 'cls.pth', '--keep-head')
    saved = torch.load(tmp_path / 'cls.pth', weights_only=True)
    keys = set(saved['state_dict'])
    assert saved['meta']['keys'] == 'ImageClassifier' and saved['meta']['head'] == 'kept'
    assert {k for k in keys if not k.startswith('backbone.')} == {'head.fc.weight',
                                                                  'head.fc.bias'}
    classes, width = saved['state_dict']['head.fc.weight'].shape
    model = models.build(classifier_cfg(saved['meta'], classes, width)).eval()
    load_checkpoint(model, str(tmp_path / 'cls.pth'), map_location='cpu', strict=True)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert_close_rel([model(x, mode='tensor')], [net(x)])
    # The printed config builds the same classifier and loads the file itself (Pretrained).
    snippet = out[out.index('model = dict('):]
    printed = models.build(eval(snippet[len('model = '):]))  # config syntax
    printed.init_weights()
    with torch.no_grad():
        assert_close_rel([printed.eval()(x, mode='tensor')], [net(x)])


@pytest.mark.slow
def test_classification_config_with_its_preprocessor_gives_torchvisions_logits(tmp_path, models):
    net = _source('torchvision:regnet_x_400mf')
    torch.save(net.state_dict(), tmp_path / 'regnet_x_400mf.pth')
    run_converter(tmp_path / 'regnet_x_400mf.pth', tmp_path / 'cls.pth', '--keep-head')
    cfg = Config.fromfile(CONFIG)
    model = models.build(dict(cfg.model, data_preprocessor=cfg.data_preprocessor)).eval()
    load_checkpoint(model, str(tmp_path / 'cls.pth'), map_location='cpu', strict=True)
    # mmcv loads images as BGR uint8; torchvision's recipe: RGB, /255, ImageNet mean/std.
    bgr = torch.randint(0, 256, (3, 40, 40), generator=torch.Generator().manual_seed(2))
    rgb = bgr.flip(0).float() / 255
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    reference = (rgb - mean.view(3, 1, 1)) / std.view(3, 1, 1)
    with torch.no_grad():
        inputs = model.data_preprocessor(dict(inputs=[bgr.to(torch.uint8)]))['inputs']
        assert_close_rel([model(inputs, mode='tensor')], [net(reference[None])])


def _mmpretrain_classifier(models):
    torch.manual_seed(0)
    model = models.build(dict(
        type='ImageClassifier', backbone=dict(type='RegNet', arch='regnetx_400mf'),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=10, in_channels=384)))
    assert type(model.backbone).__module__ == 'mmpretrain.models.backbones.regnet'
    return _random_head(randomize_norms(model), model.head.fc).eval()


@pytest.mark.slow
def test_mmpretrain_regnet_checkpoint_converts_with_and_without_its_head(tmp_path, models):
    theirs = _mmpretrain_classifier(models)
    # What mmengine's Runner saves for mmpretrain: meta, state_dict, the optimizer's state.
    torch.save(dict(meta=dict(epoch=100, dataset_meta=dict(classes=list('abcdefghij'))),
                    state_dict=theirs.state_dict(), optimizer=dict(state={}, param_groups=[])),
               tmp_path / 'epoch_100.pth')
    run_converter(tmp_path / 'epoch_100.pth', tmp_path / 'cls.pth', '--keep-head')
    saved = torch.load(tmp_path / 'cls.pth', weights_only=True)
    assert saved['meta']['preset'] == 'regnetx_400mf'
    assert saved['meta']['source']['prefix'] == 'backbone.'
    assert saved['meta']['source']['ignored'] == ['meta', 'optimizer']  # head.fc was taken
    ours = models.build(classifier_cfg(saved['meta'], 10, 384)).eval()
    ours.load_state_dict(saved['state_dict'], strict=True)
    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert_close_rel([ours(x, mode='tensor')], [theirs(x, mode='tensor')])
    run_converter(tmp_path / 'epoch_100.pth', tmp_path / 'backbone.pth')  # the detector's use
    backbone, meta = load_converted(tmp_path / 'backbone.pth')
    assert meta['head'] == 'dropped' and meta['keys'] == 'backbone'
    theirs.backbone.out_indices = (0, 1, 2, 3)
    with torch.no_grad():
        assert_close_rel(backbone(x), theirs.backbone(x))


def test_keep_head_without_a_classifier_is_refused():
    state = library_net('torchvision', 'regnet_y_400mf').state_dict()
    del state['fc.weight'], state['fc.bias']
    with pytest.raises(ConversionError, match='--keep-head: the torchvision weights have no '
                                              'classifier to keep'):
        convert_checkpoint(state, keep_head=True)
    assert convert_checkpoint(state).checkpoint['meta']['head'] == 'absent'


def test_a_kept_head_checkpoint_converts_again_to_itself():
    net = library_net('timm', 'regnetx_002')
    first = convert_checkpoint(net.state_dict(), keep_head=True).checkpoint
    second = convert_checkpoint(first, keep_head=True).checkpoint
    assert second['meta']['source']['format'] == 'mmdet'
    assert first['state_dict'].keys() == second['state_dict'].keys()
    assert all(torch.equal(v, second['state_dict'][k]) for k, v in first['state_dict'].items())
