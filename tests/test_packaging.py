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
    assert 'Apache License' in (ROOT / 'LICENSE').read_text()


# -- requirements: requirements/*.txt are the one list; the metadata is read from them --

def _pyproject() -> dict:
    import tomllib
    with open(ROOT / 'pyproject.toml', 'rb') as f:
        return tomllib.load(f)


def _file_requirements(files) -> set:
    """(name, specifier) of every requirement in ``files`` (paths relative to ROOT)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    found = set()
    for name in files:
        for line in (ROOT / name).read_text().splitlines():
            line = line.split('#', 1)[0].strip()
            if line:
                req = Requirement(line)
                found.add((canonicalize_name(req.name), str(req.specifier)))
    return found


def _declared() -> dict:
    """Extra ('' for the base) -> the requirements its files list, as pyproject.toml unites them."""
    dynamic = _pyproject()['tool']['setuptools']['dynamic']
    declared = {'': _file_requirements(dynamic['dependencies']['file'])}
    for extra, spec in dynamic['optional-dependencies'].items():
        declared[extra] = _file_requirements(spec['file'])
    return declared


def _metadata_requirements(requires, extras) -> dict:
    """Extra ('' for the base) -> (name, specifier) from ``Requires-Dist`` lines."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    found = {extra: set() for extra in ['', *extras]}
    for line in requires:
        req = Requirement(line)
        for extra in found:
            applies = req.marker is None if not extra else \
                req.marker is not None and req.marker.evaluate({'extra': extra})
            if applies:
                found[extra].add((canonicalize_name(req.name), str(req.specifier)))
    return found


def test_requirements_files_are_one_list():
    """Every file is read by pyproject.toml and by requirements.txt; a package is in one file."""
    files = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / 'requirements').glob('*.txt'))
    dynamic = _pyproject()['tool']['setuptools']['dynamic']
    used = set(dynamic['dependencies']['file'])
    for spec in dynamic['optional-dependencies'].values():
        used |= set(spec['file'])
    assert sorted(used) == files
    included = [line.split()[1] for line in (ROOT / 'requirements.txt').read_text().splitlines()
                if line.startswith('-r ')]
    assert sorted(included) == files
    assert sorted(dynamic['optional-dependencies']['all']['file']) == \
        sorted(set(files) - set(dynamic['dependencies']['file']))
    owners = {}
    for name in files:
        for package, _ in _file_requirements([name]):
            owners.setdefault(package, []).append(name)
    # numpy: the base's floor, and models.txt's cap for the OpenMMLab releases it pins.
    twice = {p: f for p, f in owners.items() if len(f) > 1 and p != 'numpy'}
    assert not twice, twice
    assert not (ROOT / 'setup.cfg').exists()  # nothing else declares requirements


def test_extras_hold_what_they_promise():
    declared = {extra: {name for name, _ in reqs} for extra, reqs in _declared().items()}
    assert declared[''] == {'numpy'}  # arch table, complexity, design space: no torch
    assert declared['runtime'] == {'onnxruntime'}  # an exported detector runs on these two
    for extra in ('det', '3d', 'cls', 'deploy'):
        assert {'torch', 'mmengine', 'mmcv'} <= declared[extra], extra
    assert 'mmdet' in declared['det'] and 'mmdet3d' in declared['3d']
    assert not {'mmdet', 'mmdet3d'} & declared['cls']
    assert {'mmdet3d', 'onnx', 'onnxruntime'} <= declared['deploy']
    assert 'psutil' in declared['tests']
    assert declared['all'] == set().union(*(v for k, v in declared.items() if k not in ('', 'all')))
    assert ('torch', '>=2.6') in _declared()['det']  # safe_globals, get_unsafe_globals_...


def test_built_metadata_equals_the_requirements_files(tmp_path):
    """The metadata setuptools builds from this checkout, as a wheel or sdist would carry it."""
    from importlib import metadata
    done = _python(f"""
        from setuptools import build_meta
        print(build_meta.prepare_metadata_for_build_wheel({str(tmp_path)!r}))
    """, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    dist = metadata.Distribution.at(tmp_path / done.stdout.split()[-1])
    declared = _declared()
    assert sorted(dist.metadata.get_all('Provides-Extra')) == sorted(set(declared) - {''})
    assert _metadata_requirements(dist.requires, set(declared) - {''}) == declared


def test_installed_metadata_equals_the_requirements_files():
    """The installed mmregnet (``make setup``: this checkout, editable) was built from them."""
    import json
    from importlib import metadata
    from urllib.parse import unquote, urlparse
    dist = metadata.distribution('mmregnet')
    url = json.loads(dist.read_text('direct_url.json') or '{}').get('url', '')
    if Path(unquote(urlparse(url).path)).resolve() != ROOT.resolve():
        pytest.skip(f'the installed mmregnet is not this checkout ({url or "no direct_url"})')
    declared = _declared()
    assert _metadata_requirements(dist.requires, set(declared) - {''}) == declared, \
        'installed metadata is stale: run make setup (pip install -e ".[all]")'


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
