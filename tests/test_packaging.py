"""The package as a user installs and imports it: light imports, registration,
``mmregnet::`` configs, metadata, and the set-up's mmcv build patch."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import mmregnet

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ('torch', 'mmengine', 'mmcv', 'mmdet', 'mmdet3d', 'mmpretrain', 'onnxruntime')


def _python(code: str, cwd=None) -> subprocess.CompletedProcess:
    """Runs ``code`` in a fresh interpreter of this venv."""
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_import_and_cli_list_load_no_heavy_stack():
    done = _python(f"""
        import sys
        import mmregnet
        from mmregnet.cli import main
        assert mmregnet.complexity('regnetx_400mf')['params'] == 5157512
        main(['list'])
        print('LOADED', sorted(m for m in {HEAVY!r} if m in sys.modules))
    """)
    assert done.returncode == 0, done.stderr
    assert 'LOADED []' in done.stdout
    assert 'regnetx_400mf' in done.stdout


def test_lazy_names_resolve():
    from mmregnet.models import RegNet
    assert mmregnet.RegNet is RegNet
    assert mmregnet.stage_channels('regnetx_400mf', (1, 2, 3)) == [64, 160, 384]
    with pytest.raises(AttributeError, match='no attribute'):
        mmregnet.not_a_name  # noqa: B018
    assert set(mmregnet.__all__) <= set(dir(mmregnet))


def test_custom_imports_register_the_backbone_in_mmdet3d_scope(tmp_path):
    (tmp_path / 'cfg.py').write_text(
        "custom_imports = dict(imports=['mmregnet'], allow_failed_imports=False)\n"
        "backbone = dict(type='RegNet', arch='regnetx_200mf')\n")
    done = _python("""
        from mmengine.config import Config
        from mmengine.registry import init_default_scope
        cfg = Config.fromfile('cfg.py')
        init_default_scope('mmdet3d')
        from mmdet3d.registry import MODELS
        from mmdet.registry import MODELS as MMDET_MODELS
        net = MODELS.build(cfg.backbone)
        print(type(net).__module__, MMDET_MODELS.get('RegNet').__module__)
    """, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ['mmregnet.models.regnet', 'mmdet.models.backbones.regnet']


def test_mmregnet_config_bases_resolve_from_any_folder(tmp_path):
    name = 'pointpillars_hv_regnet-400mf_fpn_sbn-all_8xb4-2x_nus-3d.py'
    (tmp_path / 'mine.py').write_text(
        f"_base_ = ['mmregnet::regnet/{name}']\n"
        "train_cfg = dict(max_epochs=3)\n")
    done = _python("""
        import mmregnet.models
        from mmengine.config import Config
        cfg = Config.fromfile('mine.py')
        print(cfg.model.pts_backbone.arch, cfg.train_cfg.max_epochs)
    """, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ['regnetx_400mf', '3']


def test_shipped_configs_are_the_repository_configs():
    from mmregnet.mim import configs_root
    shipped = sorted(p.relative_to(configs_root()).as_posix()
                     for p in Path(configs_root()).rglob('*.py'))
    assert shipped == sorted(p.relative_to(ROOT / 'configs').as_posix()
                             for p in (ROOT / 'configs').rglob('*.py'))
    assert shipped


def test_metadata_matches_the_package():
    from importlib import metadata
    meta = metadata.metadata('mmregnet')
    assert meta['Version'] == mmregnet.__version__
    assert meta['License-Expression'] == 'Apache-2.0'
    assert meta['Requires-Python'] == '>=3.10'
    requires = metadata.requires('mmregnet')
    assert any(r.startswith('mmdet3d==1.4.0') and 'extra == "3d"' in r for r in requires)
    assert 'Apache License' in (ROOT / 'LICENSE').read_text()


def _load_patch_tool():
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'patch_mmcv_cxx20', ROOT / 'tools' / 'setup' / 'patch_mmcv_cxx20.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mmcv_patch_sets_cxx20_and_refuses_a_foreign_source(tmp_path, capsys):
    tool = _load_patch_tool()
    source = ("if torch_ge_1_13:\n    extra_compile_args['cxx'] = ['-std=c++17']\n"
              "if nvcc:\n    extra_compile_args['nvcc'] += ['-std=c++17']\n")
    (tmp_path / 'setup.py').write_text(source)
    assert tool.main([str(tmp_path)]) == 0
    patched = (tmp_path / 'setup.py').read_text()
    assert patched == source.replace('c++17', 'c++20')
    # Patched already (or another release): refused, the file untouched.
    assert tool.main([str(tmp_path)]) == 1
    assert 'exactly once, found it 0 times' in capsys.readouterr().err
    assert (tmp_path / 'setup.py').read_text() == patched


def test_the_built_mmcv_ops_run_beside_torchvision():
    import torch
    import torchvision.ops
    from mmcv.ops import Voxelization, nms_rotated
    points = torch.tensor([[0.1, 0.1, 0.1, 1.0], [0.3, 0.1, 0.1, 2.0], [1.5, 0.5, 0.2, 3.0]])
    voxels, coors, counts = Voxelization([1.0, 1.0, 4.0], [0, 0, -2, 2, 2, 2], 4, 10)(points)
    assert counts.tolist() == [2, 1] and coors.tolist() == [[0, 0, 0], [0, 0, 1]]
    boxes = torch.tensor([[0., 0., 2., 2., 0.], [0.1, 0., 2., 2., 0.], [5., 5., 1., 1., 0.]])
    _, keep = nms_rotated(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)
    assert keep.tolist() == [0, 2]
    corners = torch.tensor([[0., 0., 2., 2.], [0.1, 0., 2., 2.], [5., 5., 6., 6.]])
    assert torchvision.ops.nms(corners, torch.tensor([0.9, 0.8, 0.7]), 0.5).tolist() == [0, 2]
