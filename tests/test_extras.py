"""Each extra installed alone into a fresh venv, with what it promises imported, built and run.

``make test-extras`` runs this module (CI runs it after ``make test``); elsewhere
it is skipped. The venvs are made by uv, which links every package from its
cache instead of copying gigabytes of torch per venv, from the indexes pip is
configured with. torch and torchvision are pinned to this venv's versions, so
that the mmcv wheel ``tools/setup_env.sh`` built and cached for this torch
installs as it is; nothing else is pinned beyond what ``requirements/*.txt``
say: a venv gets what ``pip install "mmregnet[EXTRA]"`` gives a user whose
torch is already there.
"""
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from importlib import metadata
from pathlib import Path
from typing import Iterator, List, Set

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
#: The training stack, which the light installs must not pull in.
STACK = {'torch', 'torchvision', 'triton', 'mmengine', 'mmcv', 'mmdet', 'mmdet3d', 'mmpretrain'}
#: Extras that build networks: they get the cached mmcv wheel and this venv's torch.
MODEL_EXTRAS = ('det', '3d', 'cls', 'deploy')

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get('MMREGNET_TEST_EXTRAS') != '1',
                       reason='installs each extra into a fresh venv: make test-extras'),
]


def _pip_index_options() -> List[str]:
    """uv's options for the indexes and links pip is configured with (files and environment)."""
    listing = subprocess.run([sys.executable, '-m', 'pip', 'config', 'list'], check=True,
                             capture_output=True, text=True).stdout
    flags = {'index-url': '--index-url', 'extra-index-url': '--extra-index-url',
             'find-links': '--find-links'}
    pairs: List[tuple] = []
    for line in listing.splitlines():
        key, _, value = line.partition('=')
        flag = flags.get(key.rsplit('.', 1)[-1])
        if flag:
            pairs += [(flag, item) for item in value.strip().strip('\'"').split()
                      if (flag, item) not in pairs]
    # pip takes the best version from all indexes; uv's default is the first index that has it.
    return [x for pair in pairs for x in pair] + ['--index-strategy', 'unsafe-best-match']


def _uv() -> List[str]:
    """uv from this venv (requirements/tests.txt), else from PATH."""
    if importlib.util.find_spec('uv') is not None:
        return [sys.executable, '-m', 'uv']
    if shutil.which('uv'):
        return [shutil.which('uv')]
    pytest.fail('uv is not installed: pip install -r requirements/tests.txt')


def _mmcv_wheel() -> Path:
    """The mmcv wheel tools/setup_env.sh built for this venv's torch (its cache key)."""
    import torch
    key = (f'torch{torch.__version__}-cp{sys.version_info[0]}{sys.version_info[1]}-'
           f'{sysconfig.get_platform()}')
    cache = os.environ.get('MMREGNET_CACHE') or os.path.join(
        os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'), 'mmregnet')
    wheels = sorted((Path(cache) / 'mmcv-2.1.0' / key).glob('mmcv-2.1.0-*.whl'))
    if not wheels:
        pytest.fail(f'no cached mmcv wheel in {cache}/mmcv-2.1.0/{key}: run make setup')
    return wheels[0]


class Venvs:
    """Fresh venvs, each with one extra of this checkout's wheel."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ('PYTHONPATH', 'VIRTUAL_ENV', 'PYTHONHOME')}
        self.env['MPLBACKEND'] = 'Agg'
        if os.environ.get('PIP_CERT') and 'SSL_CERT_FILE' not in self.env:
            self.env['SSL_CERT_FILE'] = os.environ['PIP_CERT']
        self.options = _pip_index_options()
        self.wheel = self._build_wheel()
        self.torch_pin = root / 'torch-pin.txt'
        self.torch_pin.write_text(''.join(f'{name}=={metadata.version(name)}\n'
                                          for name in ('torch', 'torchvision')))

    def _build_wheel(self) -> Path:
        """This checkout as a wheel, built from a copy so the build leaves the tree untouched."""
        source = self.root / 'source'
        shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
            '.git', '.venv', 'work_dirs', 'data', 'build', '*.egg-info', '__pycache__',
            '.pytest_cache'))
        out = self.root / 'wheel'
        subprocess.run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps',
                        '--no-build-isolation', str(source), '-w', str(out)],
                       check=True, env=self.env)
        return next(out.glob('mmregnet-*.whl'))

    def make(self, extra: str) -> Path:
        """A fresh venv holding ``mmregnet[extra]`` ('' for the base); returns its folder."""
        venv = self.root / (extra or 'base')
        uv = _uv()
        subprocess.run([*uv, 'venv', '-q', '--python', sys.executable, str(venv)],
                       check=True, env=self.env)
        spec = f"mmregnet{f'[{extra}]' if extra else ''} @ {self.wheel.as_uri()}"
        pins = ['-c', str(self.torch_pin), str(_mmcv_wheel())] if extra in MODEL_EXTRAS else []
        done = subprocess.run([*uv, 'pip', 'install', '-q', '--python', str(venv / 'bin/python'),
                               *self.options, *pins, spec],
                              env=self.env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        (venv / 'work').mkdir()
        return venv

    def run(self, venv: Path, args: List[str], timeout: int = 600, status: int = 0) -> str:
        """Runs a script of the venv (``[name, *args]``), or code (``['-c', CODE, '-c', MORE]``)
        in its python, outside the checkout."""
        if args[0] == '-c':
            code = ''.join(textwrap.dedent(part) for part in args[1::2])
            exe = [str(venv / 'bin' / 'python'), '-c', code]
        else:
            exe = [str(venv / 'bin' / args[0]), *args[1:]]
        done = subprocess.run(exe, cwd=venv / 'work', env=self.env, capture_output=True,
                              text=True, timeout=timeout)
        assert done.returncode == status, done.stdout + done.stderr
        return done.stdout + done.stderr if status else done.stdout


@pytest.fixture(scope='module')
def venvs(tmp_path_factory) -> Iterator[Venvs]:
    root = tmp_path_factory.mktemp('extras')
    yield Venvs(root)
    shutil.rmtree(root, ignore_errors=True)  # links into uv's cache, but thousands of them


def _distributions(venv: Path) -> dict:
    site = next(venv.glob('lib/python*/site-packages'))
    return {canonicalize_name(d.metadata['Name']): d
            for d in metadata.distributions(path=[str(site)])}


def _closure(dists: dict, roots: Set[str]) -> Set[str]:
    """``roots`` and everything they require, transitively (markers evaluated here)."""
    seen: Set[str] = set()
    todo = [(canonicalize_name(r), frozenset()) for r in roots]
    while todo:
        name, extras = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for line in dists[name].requires or ():
            req = Requirement(line)
            envs = [{'extra': e} for e in extras] or [{'extra': ''}]
            if req.marker is None or any(req.marker.evaluate(e) for e in envs):
                todo.append((canonicalize_name(req.name), frozenset(req.extras)))
    return seen


def _print_pulls(extra: str, dists: dict) -> None:
    print(f'[{extra or "base"}] {len(dists)} distributions: {" ".join(sorted(dists))}')


def test_base_install_runs_the_design_space_tools_without_torch(venvs):
    venv = venvs.make('')
    dists = _distributions(venv)
    _print_pulls('', dists)
    assert set(dists) == {'mmregnet', 'numpy'}
    venvs.run(venv, ['-c', """
        import mmregnet
        assert mmregnet.complexity('regnetx_400mf')['params'] == 5157512
        assert mmregnet.bev_backbone('regnetx_400mf')['arch'] == 'regnetx_400mf'
        assert mmregnet.stage_channels('regnetx_400mf', (1, 2, 3)) == [64, 160, 384]
    """])
    assert 'regnetx_400mf' in venvs.run(venv, ['mmregnet', 'list'])
    assert 'pts_neck' in venvs.run(venv, ['mmregnet', 'show', 'regnetx_400mf', '--no-stem',
                                          '--in-channels', '64', '--strides', '1', '2', '2', '2'])
    fit = venvs.run(venv, ['mmregnet', 'fit', '--flops', '1.6G', '--top', '1', '--quiet'])
    assert 'arch=dict(' in fit
    venvs.run(venv, ['mmregnet', 'sample', '--space', 'anynetx-a', '--n', '5', '--out', 'a.csv'])
    assert len((venv / 'work' / 'a.csv').read_text().splitlines()) == 6
    refusal = venvs.run(venv, ['mmregnet', 'plot', 'regnetx_400mf', '--out', 'w.png'], status=1)
    assert refusal.strip().endswith('pip install "mmregnet[plot]"'), refusal
    refusal = venvs.run(venv, ['regnet2mmdet', 'a.pth', 'b.pth'], status=1)
    assert refusal.strip() == ('regnet2mmdet: error: converting checkpoints needs torch, '
                               'mmengine, safetensors, which this environment lacks: pip '
                               'install "mmregnet[det]" (or [3d], [cls])'), refusal


def test_plot_extra_draws_the_width_rule(venvs):
    venv = venvs.make('plot')
    _print_pulls('plot', _distributions(venv))
    venvs.run(venv, ['mmregnet', 'plot', 'regnetx_400mf', '--out', 'w.png'])
    assert (venv / 'work' / 'w.png').read_bytes().startswith(b'\x89PNG')


def test_runtime_extra_is_numpy_and_onnxruntime_only(venvs, tmp_path):
    venv = venvs.make('runtime')
    dists = _distributions(venv)
    _print_pulls('runtime', dists)
    assert set(dists) == {'mmregnet'} | _closure(dists, {'numpy', 'onnxruntime'})
    assert not STACK & set(dists)
    assert {canonicalize_name(Requirement(r).name) for r in dists['mmregnet'].requires
            if 'extra == "runtime"' in r or ';' not in r} == {'numpy', 'onnxruntime'}
    onnx = pytest.importorskip('onnx')
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info('x', TensorProto.FLOAT, ['n'])
    y = helper.make_tensor_value_info('y', TensorProto.FLOAT, ['n'])
    graph = helper.make_graph([helper.make_node('Add', ['x', 'x'], ['y'])], 'double', [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 18)], ir_version=9)
    onnx.save(model, venv / 'work' / 'double.onnx')
    venvs.run(venv, ['-c', """
        import numpy as np
        import onnxruntime as ort
        session = ort.InferenceSession('double.onnx', providers=['CPUExecutionProvider'])
        (y,) = session.run(None, {'x': np.arange(3, dtype=np.float32)})
        assert y.tolist() == [0.0, 2.0, 4.0], y
        import mmregnet
        assert mmregnet.complexity('regnetx_400mf')['params'] == 5157512
    """])


def _absent(*modules: str) -> str:
    """Code that fails when any of ``modules`` is importable."""
    return f"""
        import importlib.util
        present = [m for m in {modules!r} if importlib.util.find_spec(m) is not None]
        assert not present, present
    """


def test_det_extra_builds_an_mmdet_detector_and_converts_weights(venvs):
    venv = venvs.make('det')
    dists = _distributions(venv)
    _print_pulls('det', dists)
    assert not {'mmdet3d', 'mmpretrain'} & set(dists)
    venvs.run(venv, ['-c', _absent('mmdet3d', 'mmpretrain'), '-c', """
        import torch
        from mmengine.config import Config
        from mmengine.registry import init_default_scope
        import mmregnet.models
        from mmregnet.mim import configs_root
        from mmdet.registry import MODELS
        from mmdet.models.backbones import RegNet as MMDetRegNet
        cfg = Config.fromfile(configs_root() + '/regnet/retinanet_regnetx-800MF_fpn_1x_coco.py')
        cfg.model.backbone.init_cfg = None
        init_default_scope('mmdet')
        model = MODELS.build(cfg.model).eval()
        assert type(model.backbone) is mmregnet.RegNet
        with torch.no_grad():
            feats = model.extract_feat(torch.rand(1, 3, 64, 64))
        assert [f.shape[1] for f in feats] == [256] * 5, [f.shape for f in feats]
        # mmdet's own RegNet's weights, as a user's checkpoint, for the converter.
        theirs = MMDetRegNet(arch='regnetx_400mf')
        torch.save({'state_dict': {'backbone.' + k: v for k, v in theirs.state_dict().items()}},
                   'mmdet_regnet.pth')
    """])
    out = venvs.run(venv, ['regnet2mmdet', '--verify', 'mmdet_regnet.pth', 'converted.pth'])
    assert 'regnetx_400mf' in out and (venv / 'work' / 'converted.pth').is_file()


def test_3d_extra_builds_and_runs_pointpillars(venvs):
    venv = venvs.make('3d')
    dists = _distributions(venv)
    _print_pulls('3d', dists)
    assert 'mmpretrain' not in dists
    venvs.run(venv, ['-c', f"""
        import sys
        sys.path.insert(0, {str(ROOT / 'tests')!r})
        import torch
        from mmengine.config import Config
        from mmengine.registry import init_default_scope
        import mmregnet.models
        from mmregnet.mim import configs_root
        from detector_inputs import point_cloud_batch, shrink_range
        cfg = Config.fromfile(
            configs_root() + '/regnet/pointpillars_hv_regnet-400mf_fpn_sbn-all_1xb4-demo_nus-3d.py')
        shrink_range(cfg)
        init_default_scope('mmdet3d')
        from mmdet3d.registry import MODELS
        model = MODELS.build(cfg.model).eval()
        assert type(model.pts_backbone) is mmregnet.RegNet
        with torch.no_grad():
            (sample,) = model.test_step(point_cloud_batch(cfg))
        boxes = sample.pred_instances_3d.bboxes_3d
        assert boxes.tensor.shape[1] == 9 and len(boxes) > 0, boxes
    """])


def test_cls_extra_builds_and_runs_a_classifier_without_mmdet(venvs):
    venv = venvs.make('cls')
    dists = _distributions(venv)
    _print_pulls('cls', dists)
    assert not {'mmdet', 'mmdet3d'} & set(dists)
    venvs.run(venv, ['-c', _absent('mmdet', 'mmdet3d'), '-c', """
        import torch
        from mmengine.config import Config
        from mmengine.registry import init_default_scope
        import mmregnet.models
        from mmregnet.mim import configs_root
        from mmpretrain.registry import MODELS
        from mmpretrain.structures import DataSample
        cfg = Config.fromfile(configs_root() + '/classification/regnetx-tiny_1xb32-6e_bars.py')
        init_default_scope('mmpretrain')
        model = MODELS.build(cfg.model)
        assert type(model.backbone) is mmregnet.RegNet
        images = torch.rand(2, 3, 32, 32)
        samples = [DataSample().set_gt_label(1), DataSample().set_gt_label(3)]
        loss = model(images, samples, mode='loss')['loss']
        loss.backward()
        model.eval()
        with torch.no_grad():
            predicted = model(images, mode='predict')
        assert len(predicted) == 2 and predicted[0].pred_score.shape == (4,)
    """])


def test_deploy_extra_exports_and_runs_a_detector(venvs):
    venv = venvs.make('deploy')
    _print_pulls('deploy', _distributions(venv))
    venvs.run(venv, ['-c', f"""
        import sys
        sys.path.insert(0, {str(ROOT / 'tests')!r})
        import torch
        from mmengine.config import Config
        from mmengine.registry import init_default_scope
        import mmregnet.models
        from mmregnet.deploy import OnnxDetector, export_detector
        from mmregnet.mim import configs_root
        from detector_inputs import point_cloud_batch, shrink_range
        cfg = Config.fromfile(
            configs_root() + '/regnet/pointpillars_hv_regnet-400mf_fpn_sbn-all_1xb4-demo_nus-3d.py')
        shrink_range(cfg)
        cfg.dump('small.py')
        init_default_scope('mmdet3d')
        from mmdet3d.registry import MODELS
        torch.save({{'state_dict': MODELS.build(cfg.model).state_dict()}}, 'small.pth')
        export_detector('small.py', 'small.pth', 'exported')
        points = point_cloud_batch(cfg)['inputs']['points'][0]
        sample = OnnxDetector('exported')(points.numpy())
        assert len(sample.pred_instances_3d.scores_3d) > 0
    """])
