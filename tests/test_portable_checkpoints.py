"""Checkpoints of tools/train.py load with weights-only torch.load, mmengine's load_checkpoint
and mmdet3d's init_model in a process where no allow-list of mmregnet's is in effect, and
--resume still restores the whole training state (mmregnet/runtime/portable_checkpoint.py).
"""
import io
import os
import shutil
import subprocess
import sys
from collections import OrderedDict

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer

from mmregnet.compat import allow_mmengine_checkpoints
from mmregnet.runtime.portable_checkpoint import (PortableCheckpointHook, add_portable_hook,
                                                  from_portable, to_portable)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUS = os.path.join(REPO, 'configs', 'regnet',
                   'pointpillars_hv_regnet-400mf_fpn_sbn-all_1xb4-demo_nus-3d.py')
ENV = dict(os.environ, OMP_NUM_THREADS='1',
           PYTHONPATH=os.pathsep.join([REPO, os.environ.get('PYTHONPATH', '')]))


def _our_allow_list():
    """Allow-listed globals beyond torch's own (torch adds exception classes and the like)."""
    names = [entry[1] if isinstance(entry, tuple) else f'{entry.__module__}.{entry.__qualname__}'
             for entry in torch.serialization.get_safe_globals()]
    return [n for n in names if n.startswith(('numpy', 'mmengine', 'mmregnet', 'builtins.get'))]


def _runner_like():
    """What mmengine's Runner saves besides weights: buffers, numpy scalars, shared lists."""
    state = OrderedDict(w=torch.arange(3.0))
    state._metadata = {'': {'version': 2}}
    base_values = [np.float64(0.1)]
    checkpoint = {
        'meta': {'epoch': 2, 'iter': 8, 'seed': 0, 'dataset_meta': {'classes': ['car']}},
        'state_dict': state,
        'param_schedulers': [{'base_values': base_values, 'last_step': 8}],
        'message_hub': {
            'log_scalars': OrderedDict([
                ('train/loss', HistoryBuffer([1.5, 0.5], [1, 2], max_length=10)),
                ('train/lr', HistoryBuffer(np.array([0.1, 0.01], np.float32), [1, 1])),
                ('train/empty', HistoryBuffer())]),
            'runtime_info': OrderedDict(eta=np.float64(12.5), best=(np.int64(3), 'x')),
            'resumed_keys': {'train/loss': True}}}
    return checkpoint, base_values


def test_portable_round_trip_without_any_allow_list():
    checkpoint, base_values = _runner_like()
    buffers = dict(checkpoint['message_hub']['log_scalars'])
    to_portable(checkpoint)
    data = io.BytesIO()
    torch.save(checkpoint, data)
    data.seek(0)
    assert _our_allow_list() == []
    loaded = torch.load(data, weights_only=True)
    hub = loaded['message_hub']
    assert hub['runtime_info']['eta'] == 12.5 and type(hub['runtime_info']['eta']) is float
    assert hub['runtime_info']['best'] == (3, 'x') and type(hub['runtime_info']['best'][0]) is int
    assert loaded['param_schedulers'][0]['base_values'] == [0.1]
    assert type(base_values[0]) is np.float64  # the live scheduler's list is not changed
    assert loaded['state_dict']._metadata == {'': {'version': 2}}
    from_portable(loaded)
    for key, buffer in buffers.items():
        restored = hub['log_scalars'][key]
        assert isinstance(restored, HistoryBuffer) and restored.max_length == buffer.max_length
        for ours, theirs in zip(restored.data, buffer.data):
            assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs)
    assert hub['log_scalars']['train/loss'].mean() == buffers['train/loss'].mean() == 2 / 3


def test_checkpoints_from_before_stay_readable():
    checkpoint, _ = _runner_like()
    # An empty numpy array pickles through builtins.bytes, which the scoped policy refuses;
    # the Runner never saves one (a buffer is made with its first value).
    del checkpoint['message_hub']['log_scalars']['train/empty']
    data = io.BytesIO()
    torch.save(checkpoint, data)  # HistoryBuffers pickled as they are
    data.seek(0)
    with allow_mmengine_checkpoints():
        loaded = torch.load(data)
    from_portable(loaded)  # leaves real buffers alone
    assert isinstance(loaded['message_hub']['log_scalars']['train/loss'], HistoryBuffer)
    assert from_portable({'state_dict': {}}) == {'state_dict': {}}


def test_hook_comes_from_the_runtime_config_or_the_tools(tmp_path):
    from mmengine.model import BaseModel
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner

    class Tiny(BaseModel):
        def forward(self, *args, **kwargs):
            return {}

    with DefaultScope.overwrite_default_scope('mmdet3d'):
        by_config = Runner(model=Tiny(), work_dir=str(tmp_path / 'a'), default_scope='mmdet3d',
                           custom_hooks=[dict(type='mmregnet.PortableCheckpointHook')])
        plain = Runner(model=Tiny(), work_dir=str(tmp_path / 'b'), default_scope='mmdet3d')
    assert add_portable_hook(by_config) is False  # the config's hook is enough
    assert add_portable_hook(plain) is True and add_portable_hook(plain) is False
    for runner in (by_config, plain):
        assert sum(isinstance(h, PortableCheckpointHook) for h in runner.hooks) == 1


@pytest.mark.parametrize('scope', ['mmdet3d', 'mmdet', 'mmpretrain'])
def test_hook_builds_by_name_in_every_scope(scope):
    """The runtime base config's entry builds in mmdet3d's, mmdet's and mmpretrain's runs."""
    from mmengine.registry import HOOKS, DefaultScope
    with DefaultScope.overwrite_default_scope(scope):
        hook = HOOKS.build(dict(type='mmregnet.PortableCheckpointHook'))
    assert type(hook) is PortableCheckpointHook


def _train(work, data_root, *extra):
    options = [f'train_dataloader.dataset.data_root={data_root}/', 'train_dataloader.batch_size=2',
               'train_cfg.max_epochs=2', 'default_hooks.logger.interval=1']
    result = subprocess.run([sys.executable, os.path.join(REPO, 'tools', 'train.py'), NUS,
                             '--work-dir', str(work), *extra, '--cfg-options', *options],
                            env=ENV, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert result.returncode == 0, result.stdout[-4000:]
    return result.stdout


# Run in a fresh interpreter that imports only torch, mmengine and mmdet3d (the config's
# custom_imports brings in mmregnet's models, never its runtime, and no allow-list of ours
# is in effect: its scoped policy is entered only while mmregnet itself reads a file).
LOADER = r'''
import sys, torch
from mmengine.runner import load_checkpoint
from mmdet3d.apis import init_model
config, path = sys.argv[1:]
checkpoint = torch.load(path, weights_only=True)
model = init_model(config, None, device='cpu')
load_checkpoint(model, path, map_location='cpu', strict=True)
loaded = init_model(config, path, device='cpu')
for m in (model, loaded):
    for key, value in m.state_dict().items():
        assert torch.equal(value, checkpoint['state_dict'][key]), key
assert loaded.dataset_meta['classes'] == checkpoint['meta']['dataset_meta']['classes']
names = [g[1] if isinstance(g, tuple) else f'{g.__module__}.{g.__qualname__}'
         for g in torch.serialization.get_safe_globals()]
assert not [n for n in names if n.startswith(('numpy', 'mmengine', 'mmregnet', 'builtins.get'))]
assert not [m for m in sys.modules if m.startswith('mmregnet.runtime')]
print('LOADED', len(checkpoint['state_dict']))
'''


def _load(path):
    with allow_mmengine_checkpoints():
        return torch.load(path, map_location='cpu')


def _same_tensors(a, b):
    if torch.is_tensor(a):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_tensors(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same_tensors(x, y) for x, y in zip(a, b))
    return a == b


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """Two epochs of one step each on a generated nuScenes-format dataset."""
    work = tmp_path_factory.mktemp('portable')
    data_root = str(work / 'nuscenes')
    subprocess.run([sys.executable, os.path.join(REPO, 'tools', 'create_synthetic_data.py'),
                    'nuscenes', '--root', data_root, '--train-scenes', '1', '--val-scenes', '1',
                    '--samples-per-scene', '2', '--annotation-range', '12.8',
                    '--azimuth-steps', '360', '--quiet'], env=ENV, check=True)
    _train(work / 'run', data_root)
    return work, data_root


@pytest.mark.slow
def test_checkpoint_loads_in_a_process_without_mmregnet_allow_list(trained):
    work, _ = trained
    path = str(work / 'run' / 'epoch_2.pth')
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
    result = subprocess.run([sys.executable, '-c', LOADER, NUS, path], env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=str(work))
    assert result.returncode == 0, result.stdout[-4000:]
    assert 'LOADED' in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize('written', ['portable', 'before'])
def test_resume_restores_the_training_state(trained, tmp_path, written):
    """Resuming after epoch 1 gives epoch 2 of the uninterrupted run, whether the epoch-1
    checkpoint is portable or was written before (with HistoryBuffers in it)."""
    work, data_root = trained
    first = tmp_path / 'epoch_1.pth'
    if written == 'portable':
        shutil.copy(work / 'run' / 'epoch_1.pth', first)
    else:
        torch.save(from_portable(torch.load(work / 'run' / 'epoch_1.pth')), first)
        assert torch.serialization.get_unsafe_globals_in_checkpoint(str(first))
    output = _train(tmp_path, data_root, '--resume', str(first))
    assert 'resumed epoch: 1, iter: 1' in output
    ours, theirs = _load(tmp_path / 'epoch_2.pth'), _load(work / 'run' / 'epoch_2.pth')
    assert (ours['meta']['epoch'], ours['meta']['iter']) == (2, 2)
    for key in ('state_dict', 'optimizer', 'param_schedulers'):
        assert _same_tensors(ours[key], theirs[key]), key
    for key in ('train/loss', 'train/lr', 'train/grad_norm'):  # restored history + new step
        mine, other = (c['message_hub']['log_scalars'][key] for c in (ours, theirs))
        assert len(mine['log_history']) == 2 and torch.equal(mine['log_history'],
                                                             other['log_history'])
