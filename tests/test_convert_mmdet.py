"""Converting checkpoints of mmdet/mmdet3d runs: mmengine's checkpoint dict, prefixes, logs."""
import pytest
import torch
from mmdet.models.backbones import RegNet as MMDetRegNet
from mmengine.logging import MessageHub

from mmregnet import RegNet
from mmregnet.convert import ConversionError, convert_checkpoint, convert_file

from norms import randomize_norms


def runner_checkpoint(model_state):
    """What mmengine's Runner saves: meta, the model, optimizer state and the training logs."""
    hub = MessageHub.get_instance('test_convert_mmdet')
    hub.update_scalar('train/loss', 0.75)
    hub.update_info('iter', 120)
    return dict(meta=dict(epoch=12, iter=120, mmengine_version='0.10.7', seed=0),
                state_dict=model_state, message_hub=hub.state_dict(),
                optimizer=dict(state={}, param_groups=[dict(lr=0.02, params=[0, 1])]))


def test_mmdet_run_checkpoint_converts_and_matches_mmdets_regnet(tmp_path):
    torch.manual_seed(0)
    backbone = randomize_norms(MMDetRegNet(arch='regnetx_400mf'))
    backbone.eval()  # mmdet's ResNet.train() returns None
    state = {f'backbone.{k}': v for k, v in backbone.state_dict().items()}
    state['neck.lateral_convs.0.conv.weight'] = torch.zeros(256, 32, 1, 1)
    state['bbox_head.fc_cls.weight'] = torch.zeros(80, 256)
    torch.save(runner_checkpoint(state), tmp_path / 'epoch_12.pth')
    result = convert_file(str(tmp_path / 'epoch_12.pth'), str(tmp_path / 'out.pth'))
    saved = torch.load(tmp_path / 'out.pth', weights_only=True)
    assert saved['meta']['preset'] == 'regnetx_400mf'
    assert saved['meta']['source']['prefix'] == 'backbone.'
    ignored = ' '.join(saved['meta']['source']['ignored'])
    for part in ('message_hub', 'optimizer', 'neck.* (1 tensors', 'bbox_head.* (1 tensors'):
        assert part in ignored
    assert any('neck' in note for note in result.notes)
    net = RegNet('regnetx_400mf').eval()
    net.load_state_dict(saved['state_dict'], strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for ours, theirs in zip(net(x), backbone(x)):
            torch.testing.assert_close(ours, theirs)


def test_mmdet3d_stemless_backbone_is_found_under_pts_backbone():
    net = RegNet('regnety_200mf', in_channels=64, with_stem=False, strides=(1, 2, 2, 2))
    state = {f'pts_backbone.{k}': v for k, v in net.state_dict().items()}
    state['pts_voxel_encoder.pfn_layers.0.linear.weight'] = torch.zeros(64, 10)
    result = convert_checkpoint(dict(state_dict=state))
    assert result.arch.name == 'regnety_200mf'
    assert result.backbone == dict(in_channels=64, with_stem=False)
    assert result.observed.stem_channels is None
    RegNet('regnety_200mf', **result.backbone).load_state_dict(
        result.checkpoint['state_dict'], strict=True)


def test_a_checkpoint_with_two_backbones_needs_prefix():
    x = RegNet('regnetx_200mf').state_dict()
    state = {**{f'img_backbone.{k}': v for k, v in x.items()},
             **{f'pts_backbone.{k}': v for k, v in x.items()}}
    with pytest.raises(ConversionError, match='several RegNet backbones'):
        convert_checkpoint(dict(state_dict=state))
    result = convert_checkpoint(dict(state_dict=state), prefix='img_backbone')
    assert result.checkpoint['meta']['source']['prefix'] == 'img_backbone.'


def test_dataparallel_module_prefix_is_removed():
    state = {f'module.{k}': v for k, v in RegNet('regnetx_200mf').state_dict().items()}
    assert convert_checkpoint(state).arch.name == 'regnetx_200mf'


def test_converting_a_converted_checkpoint_is_the_identity(tmp_path):
    net = randomize_norms(RegNet('regnety_200mf'))
    torch.save(net.state_dict(), tmp_path / 'a.pth')
    convert_file(str(tmp_path / 'a.pth'), str(tmp_path / 'b.pth'))
    convert_file(str(tmp_path / 'b.pth'), str(tmp_path / 'c.pth'))
    b, c = (torch.load(tmp_path / n, weights_only=True) for n in ('b.pth', 'c.pth'))
    assert c['meta']['source']['format'] == 'mmdet' and c['meta']['source']['ignored'] == ['meta']
    assert b['state_dict'].keys() == c['state_dict'].keys() == net.state_dict().keys()
    for k, v in net.state_dict().items():
        assert torch.equal(c['state_dict'][k], v)
