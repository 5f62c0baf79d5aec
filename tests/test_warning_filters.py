"""Quiet tools: third-party warnings a user can do nothing about are hidden at the entry
points, by category, message and module, and shown with ``--debug``; library code
never filters warnings beyond a ``catch_warnings`` block."""
import ast
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from mmregnet.warning_filters import THIRD_PARTY_WARNINGS, hide_third_party_warnings

ROOT = Path(__file__).resolve().parents[1]
#: Programs a user runs; tools/setup/ runs before mmregnet is installed and imports no
#: third-party code.
ENTRY_POINTS = sorted(
    {p for pattern in ('tools/*.py', 'tools/*/*.py', 'benchmarks/*.py')
     for p in ROOT.glob(pattern) if p.parent.name != 'setup'}
    | {ROOT / 'mmregnet' / 'cli.py', ROOT / 'mmregnet' / 'convert' / 'cli.py'})
#: Entry points that are a thin wrapper of a CLI's ``main`` (which calls the helper).
WRAPPERS = {'tools/model_converters/regnet2mmdet.py': 'from mmregnet.convert.cli import main'}
THIRD_PARTY = {'torch', 'torchvision', 'mmengine', 'mmcv', 'mmdet', 'mmdet3d', 'mmpretrain',
               'numpy', 'yaml', 'onnx', 'onnxruntime'}
DEMO_CONFIG = 'configs/regnet/pointpillars_hv_regnet-400mf_fpn_sbn-all_1xb4-demo_nus-3d.py'


def _warn(message: str, category, module: str) -> list:
    """The warnings that get through when ``module`` raises ``message``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        assert hide_third_party_warnings([])
        warnings.warn_explicit(message, category, 'x.py', 1, module=module)
    return caught


#: Warnings as the stack raises them in our tools: (message, module it is raised for).
SEEN = [
    ('pkg_resources is deprecated as an API. See https://setuptools.pypa.io/en/latest/'
     'pkg_resources.html.', 'mmengine.utils.package_utils'),
    ('pkg_resources is deprecated as an API. See https://setuptools.pypa.io/en/latest/'
     'pkg_resources.html.', 'importlib'),
    ('dir_offset and dir_limit_offset will be depressed and be incorporated into box coder in '
     'the future', 'mmdet3d.models.dense_heads.anchor3d_head'),
    ('torch.meshgrid: in an upcoming release, it will be required to pass the indexing argument.',
     'torch.functional'),
    ('DeprecationWarning: pos_bboxes is deprecated, please use "pos_priors" instead',
     'mmdet.models.task_modules.samplers.sampling_result'),
]


@pytest.mark.parametrize('message, module', SEEN, ids=[m for _, m in SEEN])
def test_each_listed_warning_is_hidden_only_where_the_stack_raises_it(message, module):
    assert _warn(message, UserWarning, module) == []
    assert len(_warn(message, UserWarning, 'mmregnet.deploy.export')) == 1  # ours stay
    assert len(_warn('another message', UserWarning, module)) == 1
    assert len(_warn(message, RuntimeWarning, module)) == 1


def test_every_listed_warning_is_one_the_stack_raises():
    for noise in THIRD_PARTY_WARNINGS:
        assert any(m.startswith(noise.message) for m, _ in SEEN), noise


def test_debug_and_python_warning_options_leave_every_warning(monkeypatch):
    with warnings.catch_warnings():
        assert not hide_third_party_warnings(['config.py', '--debug'])
        monkeypatch.setattr(sys, 'warnoptions', ['default'])
        assert not hide_third_party_warnings([])


@pytest.mark.parametrize('path', ENTRY_POINTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_entry_point_hides_them_before_importing_the_stack(path):
    name = path.relative_to(ROOT).as_posix()
    source = path.read_text()
    if name in WRAPPERS:
        assert WRAPPERS[name] in source
        return
    assert 'hide_third_party_warnings(' in source
    called = False
    for node in ast.parse(source).body:
        if isinstance(node, ast.Expr) and 'hide_third_party_warnings(' in ast.unparse(node):
            called = True
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ''] if isinstance(node, ast.ImportFrom) else []
        for module in modules:
            heavy = module.split('.')[0] in THIRD_PARTY or (
                module.startswith('mmregnet.') and module != 'mmregnet.warning_filters')
            assert called or not heavy or name.startswith('mmregnet/'), (name, module)


def test_library_code_filters_only_inside_catch_warnings():
    for path in (ROOT / 'mmregnet').rglob('*.py'):
        if path.name == 'warning_filters.py':
            continue
        tree = ast.parse(path.read_text())
        scoped = {id(n) for w in ast.walk(tree) if isinstance(w, ast.With)
                  and any('catch_warnings' in ast.unparse(i.context_expr) for i in w.items)
                  for n in ast.walk(w)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr in ('filterwarnings', 'simplefilter'):
                assert id(node) in scoped, f'{path}:{node.lineno}'


def _test_tool(*extra: str) -> subprocess.CompletedProcess:
    """tools/test.py reading a config with mmdet3d bases (mmengine's pkg_resources import)."""
    return subprocess.run([sys.executable, 'tools/test.py', DEMO_CONFIG, 'missing.pth', *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_a_tool_prints_what_it_did_and_debug_shows_the_warnings():
    quiet = _test_tool()
    assert quiet.returncode == 1
    assert quiet.stderr.strip() == 'tools/test.py: error: checkpoint missing.pth does not exist'
    loud = _test_tool('--debug')
    assert loud.returncode == 1
    assert 'UserWarning: pkg_resources is deprecated as an API' in loud.stderr
