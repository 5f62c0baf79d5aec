"""Real timm and torchvision RegNets, saved as users save them, through regnet2mmdet, into RegNet.

Every torchvision RegNet builder and every timm RegNet of the 24 presets (plus timm's
``*_tv`` models), with random weights and BN statistics, is saved with
``torch.save(model.state_dict())`` (timm's also with safetensors' ``save_file``),
converted by the command's ``main()``, loaded strictly into mmregnet's ``RegNet``, and
its stage outputs must equal the library's own on a 1x3x32x32 input (1e-4 of each
stage's largest value). regnet_y_128gf (645 M parameters, 2.6 GB a copy) is converted
from its full-size shapes only: its weights would need several GB on a 2-core CI machine.
The command also runs as a process once per source format, with ``--verify``.
"""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pycls.models.anynet import AnyNet
from safetensors.torch import save_file
from timm.models.regnet import model_cfgs as timm_cfgs
from torchvision.models.regnet import BlockParams, RegNet as TorchvisionRegNet

from mmregnet import PRESETS, RegNet, get_arch
from mmregnet.convert import convert_checkpoint

from conftest import pycls_anynet_kwargs
from library_nets import (TIMM_MODELS, TORCHVISION_BUILDERS, TORCHVISION_CHANGED,
                          assert_close_rel, library_net, library_stages, load_converted,
                          run_converter, stage_outputs)
from norms import randomize_norms

pytestmark = pytest.mark.slow  # timm and torchvision networks of every preset

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / 'tools' / 'model_converters' / 'regnet2mmdet.py'
X = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
NUMERIC_BUILDERS = [b for b in TORCHVISION_BUILDERS if b != 'regnet_y_128gf']


@pytest.fixture
def scratch(tmp_path):
    """tmp_path, emptied afterwards: the large models' files would stay on disk otherwise."""
    yield tmp_path
    for path in tmp_path.iterdir():
        path.unlink()


def _expected_torchvision_arch(builder):
    preset = TORCHVISION_BUILDERS[builder]
    if preset in TORCHVISION_CHANGED:
        return dict(PRESETS[preset].to_dict(), width_rounding='torchvision')
    return preset


@pytest.mark.parametrize('builder', NUMERIC_BUILDERS)
def test_every_torchvision_builder_converts_to_its_own_outputs(scratch, builder):
    net = library_net('torchvision', builder)
    expected = stage_outputs(library_stages(net), X)
    torch.save(net.state_dict(), scratch / f'{builder}.pth')
    del net
    run_converter(scratch / f'{builder}.pth', scratch / 'out.pth')
    ours, meta = load_converted(scratch / 'out.pth')
    assert meta['source']['format'] == 'torchvision' and meta['head'] == 'dropped'
    assert meta['arch'] == _expected_torchvision_arch(builder)
    with torch.no_grad():
        assert_close_rel(ours(X), expected)


def test_regnet_y_128gf_shapes_convert_to_an_arch_dict_that_loads_strictly():
    # The builder's own numbers; its width computation cannot run on the meta device.
    params = BlockParams.from_init_params(depth=27, w_0=456, w_a=160.83, w_m=2.52,
                                          group_width=264, se_ratio=0.25)
    with torch.device('meta'):
        state = TorchvisionRegNet(params).state_dict()
    assert sum(v.numel() for k, v in state.items() if 'running' not in k
               and 'num_batches' not in k) == 644_812_894  # torchvision's published count
    result = convert_checkpoint(state)
    assert result.arch.name is None and result.observed.widths == (528, 1056, 2904, 7392)
    with torch.device('meta'):
        net = RegNet(result.arch.config_value(), **result.backbone)
    net.load_state_dict(result.checkpoint['state_dict'], strict=True, assign=True)


def _timm_arch(name):
    """The arch timm's own config of ``name`` describes."""
    c = timm_cfgs[name]
    return get_arch(dict(w0=c.w0, wa=c.wa, wm=c.wm, depth=c.depth, group_w=c.group_size,
                         bot_mul=c.bottle_ratio, se_ratio=c.se_ratio or None,
                         width_rounding='torchvision' if c.group_min_ratio else 'pycls'))


@pytest.mark.parametrize('name', TIMM_MODELS)
def test_every_timm_regnet_converts_from_pth_and_safetensors_to_its_own_outputs(scratch, name):
    net = library_net('timm', name)
    expected = stage_outputs(library_stages(net), X)
    torch.save(net.state_dict(), scratch / f'{name}.pth')
    save_file(net.state_dict(), scratch / f'{name}.safetensors')
    del net
    for src in (f'{name}.pth', f'{name}.safetensors'):
        run_converter(scratch / src, scratch / 'out.pth', '--force')
        ours, meta = load_converted(scratch / 'out.pth')
        assert meta['source']['format'] == 'timm' and meta['source']['file'] == src
        assert get_arch(meta['arch']) == _timm_arch(name)
        assert (meta['preset'] is None) == name.endswith('_tv')
        with torch.no_grad():
            assert_close_rel(ours(X), expected)


def _cli(*argv):
    return subprocess.run([sys.executable, str(TOOL), *map(str, argv)], capture_output=True,
                          text=True, cwd=REPO)


def test_cli_process_torchvision_pth_with_verify_before_the_paths(tmp_path):
    # --verify takes no value, so it cannot swallow SRC.
    net = library_net('torchvision', 'regnet_y_400mf')
    torch.save(net.state_dict(), tmp_path / 'regnet_y_400mf.pth')
    run = _cli('--verify', tmp_path / 'regnet_y_400mf.pth', tmp_path / 'out.pth')
    assert run.returncode == 0, run.stderr
    assert 'largest stage-output difference vs torchvision 0.29.1:' in run.stdout
    ours, meta = load_converted(tmp_path / 'out.pth')
    assert meta['verify']['reference'] == 'torchvision 0.29.1'
    assert meta['preset'] == 'regnety_400mf'
    with torch.no_grad():
        assert_close_rel(ours(X), stage_outputs(library_stages(net), X))


@pytest.mark.parametrize('suffix', ['pth', 'safetensors'])
def test_cli_process_timm_file_with_verify_arch_by_timm_name(tmp_path, suffix):
    net = library_net('timm', 'regnety_002')
    src = tmp_path / f'regnety_002.{suffix}'
    (save_file if suffix == 'safetensors' else torch.save)(net.state_dict(), src)
    run = _cli('--verify-arch', 'regnety_002', src, tmp_path / 'out.pth')
    assert run.returncode == 0, run.stderr
    assert 'into RegNet(regnety_002)' in run.stdout and 'vs timm 1.0.31:' in run.stdout
    ours, meta = load_converted(tmp_path / 'out.pth')
    assert meta['preset'] == 'regnety_200mf' and meta['verify']['max_abs_diff'] is not None
    with torch.no_grad():
        assert_close_rel(ours(X), stage_outputs(library_stages(net), X))


def test_cli_process_pycls_pyth_with_verify(tmp_path):
    torch.manual_seed(0)
    net = randomize_norms(AnyNet(**pycls_anynet_kwargs('regnetx_400mf'))).eval()
    torch.save({'epoch': 100, 'model_state': net.state_dict()}, tmp_path / 'x.pyth')
    run = _cli(tmp_path / 'x.pyth', tmp_path / 'out.pth', '--verify')
    assert run.returncode == 0, run.stderr
    assert 'vs pycls 0.1.1:' in run.stdout and 'bgr_to_rgb=False' in run.stdout
    ours, _ = load_converted(tmp_path / 'out.pth')
    with torch.no_grad():
        assert_close_rel(ours(X), stage_outputs(library_stages(net), X))
