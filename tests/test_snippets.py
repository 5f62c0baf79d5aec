"""Every config snippet mmregnet prints pastes into the config it is meant for.

``mmregnet show`` prints the text; each test pastes it verbatim into a user
config over one of mmdet3d's or mmdet's own configs, loads it with mmengine
and builds the detector with the upstream registry.
"""
import textwrap

import pytest
from mmengine.config import Config

from mmregnet import get_arch
from mmregnet.cli import main as mmregnet_cli
from mmregnet.detection import check_neck_channels
from mmregnet.models import RegNet

CUSTOM_IMPORTS = "custom_imports = dict(imports=['mmregnet'], allow_failed_imports=False)\n"


def _show(capsys, *args):
    """The snippets ``mmregnet show`` prints, by comment heading."""
    assert mmregnet_cli(['show', *args]) in (0, None)
    text = capsys.readouterr().out
    body = text[text.index('# custom_imports'):]
    backbone, rest = body.split('# with an FPN neck\n')
    fpn, secondfpn = rest.split('\n# or with a SECOND-FPN neck')
    return (backbone.split('\n', 1)[1], fpn + '\n', secondfpn.split('\n', 1)[1])


def _paste(tmp_path, base: str, *snippets: str) -> Config:
    body = textwrap.indent(''.join(snippets), '    ')
    path = tmp_path / 'user_config.py'
    path.write_text(f"_base_ = ['{base}']\n{CUSTOM_IMPORTS}model = dict(\n{body})\n")
    return Config.fromfile(str(path))


def _build(cfg: Config, scope: str):
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope(scope):
        if scope == 'mmdet3d':
            from mmdet3d.registry import MODELS
        else:
            from mmdet.registry import MODELS
        return MODELS.build(cfg.model)


@pytest.mark.parametrize('base, neck', [
    ('mmdet3d::regnet/pointpillars_hv_regnet-400mf_fpn_sbn-all_8xb4-2x_nus-3d.py', 'fpn'),
    ('mmdet3d::pointpillars/pointpillars_hv_secfpn_sbn-all_8xb4-2x_nus-3d.py', 'secondfpn'),
    ('mmdet3d::pointpillars/pointpillars_hv_fpn_sbn-all_8xb2-2x_lyft-3d.py', 'fpn'),
])
@pytest.mark.parametrize('arch', ['regnetx_1.6gf', 'regnety_400mf'])
def test_show_no_stem_pastes_into_pointpillars(tmp_path, capsys, base, neck, arch):
    backbone, fpn, secondfpn = _show(capsys, arch, '--no-stem', '--in-channels', '64', '--strides',
                                     '1', '2', '2', '2', '--out-indices', '1', '2', '3')
    cfg = _paste(tmp_path, base, backbone, fpn if neck == 'fpn' else secondfpn)
    assert cfg.model.pts_backbone.norm_cfg == dict(type='naiveSyncBN2d', eps=1e-3, momentum=0.01)
    assert cfg.model.pts_backbone.norm_eval is False
    assert 'base_channels' not in cfg.model.pts_backbone  # the base's NoStemRegNet is replaced
    model = _build(cfg, 'mmdet3d')
    assert isinstance(model.pts_backbone, RegNet) and not model.pts_backbone.with_stem
    assert model.pts_backbone.arch == get_arch(arch)
    check_neck_channels(model)
    weights = cfg.model.pts_backbone.get('init_cfg')
    assert (weights is not None) == arch.startswith('regnetx')


@pytest.mark.parametrize('base', ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
                                  'mmdet::regnet/retinanet_regnetx-800MF_fpn_1x_coco.py'])
def test_show_pastes_into_mmdet(tmp_path, capsys, base):
    backbone, fpn, _ = _show(capsys, 'regnetx_3.2gf')
    cfg = _paste(tmp_path, base, backbone, fpn)
    model = _build(cfg, 'mmdet')
    assert type(model.backbone) is RegNet
    assert cfg.model.neck.num_outs == 5  # the base's neck is kept, only its inputs change
    check_neck_channels(model)


def _converted(tmp_path, capsys, preset, *options):
    """Converts a random-init pycls network with the CLI; returns (file, printed snippet)."""
    import torch
    from pycls.models.anynet import AnyNet

    from conftest import pycls_anynet_kwargs
    from mmregnet.convert.cli import main as convert_cli
    torch.manual_seed(0)
    src, dst = tmp_path / 'pycls.pyth', tmp_path / 'converted.pth'
    torch.save({'model_state': AnyNet(**pycls_anynet_kwargs(preset)).state_dict()}, src)
    assert convert_cli([str(src), str(dst), *options]) == 0
    out = capsys.readouterr().out
    start = out.index('pts_backbone=dict(' if '--stemless' in options else 'backbone=dict(')
    return dst, out[start:].rstrip() + '\n'


def _assert_backbone_holds(model, attr, dst):
    import torch
    state = torch.load(dst, weights_only=True)['state_dict']
    model.init_weights()  # the Pretrained init_cfg of the snippet loads the file
    got = getattr(model, attr).state_dict()
    assert all(torch.equal(got[k], v) for k, v in state.items())


def test_converter_stemless_printout_pastes_into_pointpillars(tmp_path, capsys):
    dst, snippet = _converted(tmp_path, capsys, 'regnetx_200mf', '--stemless', '64',
                              '--strides', '1', '2', '2', '2')
    cfg = _paste(tmp_path, 'mmdet3d::pointpillars/pointpillars_hv_fpn_sbn-all_8xb4-2x_nus-3d.py',
                 snippet)
    assert cfg.model.pts_backbone.init_cfg.checkpoint == str(dst)
    model = _build(cfg, 'mmdet3d')
    check_neck_channels(model)
    _assert_backbone_holds(model, 'pts_backbone', dst)


def test_converter_printout_pastes_into_mmdet(tmp_path, capsys):
    dst, snippet = _converted(tmp_path, capsys, 'regnety_200mf')
    cfg = _paste(tmp_path, 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', snippet,
                 f"neck=dict(in_channels={list(get_arch('regnety_200mf').design().widths)}),\n")
    model = _build(cfg, 'mmdet')
    check_neck_channels(model)
    _assert_backbone_holds(model, 'backbone', dst)
