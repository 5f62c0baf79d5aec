"""Resuming from the newest complete checkpoint, and loading mmengine checkpoints with
torch's weights-only unpickler (mmregnet.compat).

Also defines ``SlowLocalBackend``: tests/test_end_to_end.py makes the training subprocess
write its checkpoints through it (``custom_imports``), so that a SIGKILL lands mid-write (of
the temporary beside the checkpoint, as the tools write it).
"""
import io
import os
import pickle
import sys
import time

import numpy as np
import pytest
import torch
from mmengine.fileio import register_backend
from mmengine.logging import HistoryBuffer
from mmengine.runner import save_checkpoint

from mmregnet.compat import (allow_mmengine_checkpoints, history_buffer_getattr,
                             mmengine_checkpoint_globals)
from mmregnet.fileio import atomic_output
from mmregnet.runtime import (checkpoint_candidates, find_resumable_checkpoint,
                              is_complete_checkpoint, read_last_checkpoint)
from mmregnet.runtime.atomic_saves import AtomicLocalBackend
from mmregnet.runtime.distributed import CPUDistributedDataParallel, prepare_cpu_distributed


@register_backend('slow_local', force=True)
class SlowLocalBackend(AtomicLocalBackend):
    """The tools' checkpoint backend, writing its temporary in 20 pieces with a pause after each.

    The pause (seconds) comes from ``SLOW_CHECKPOINT_PAUSE`` (default 0.2).
    """

    def put(self, obj: bytes, filepath) -> None:
        os.makedirs(os.path.dirname(str(filepath)), exist_ok=True)
        pause = float(os.environ.get('SLOW_CHECKPOINT_PAUSE', '0.2'))
        piece = max(1, len(obj) // 20)
        with atomic_output(str(filepath), force=True) as tmp, open(tmp, 'wb') as f:
            for start in range(0, len(obj), piece):
                f.write(obj[start:start + piece])
                f.flush()
                time.sleep(pause)


def test_slow_backend_writes_the_same_bytes(tmp_path, monkeypatch):
    monkeypatch.setenv('SLOW_CHECKPOINT_PAUSE', '0')
    data = os.urandom(1000)
    SlowLocalBackend().put(data, str(tmp_path / 'sub' / 'f.bin'))
    assert (tmp_path / 'sub' / 'f.bin').read_bytes() == data


def _runner_like_checkpoint(path: str, epoch: int) -> None:
    """A checkpoint with what mmengine's Runner stores: message hub buffers, numpy values."""
    buffers = {'train/loss': HistoryBuffer([1.0, 0.5], [1, 1]),
               'train/lr': HistoryBuffer(np.array([0.1, 0.01]), np.array([1, 1]))}
    save_checkpoint({'meta': {'epoch': epoch, 'iter': 10 * epoch, 'seed': np.int64(3)},
                     'state_dict': {'w': torch.ones(3) * epoch},
                     'message_hub': {'log_scalars': buffers,
                                     'runtime_info': {'best': np.float64(0.25)}}}, path)


@pytest.fixture
def run_dir(tmp_path):
    for epoch in (1, 2, 3):
        _runner_like_checkpoint(str(tmp_path / f'epoch_{epoch}.pth'), epoch)
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_3.pth'))
    return tmp_path


def _truncate(path, fraction=0.5):
    data = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(data[:int(len(data) * fraction)])


def test_complete_checkpoint_detection(run_dir, tmp_path):
    path = str(run_dir / 'epoch_2.pth')
    assert is_complete_checkpoint(path)
    _truncate(path, 0.9)
    assert not is_complete_checkpoint(path)
    corrupt = str(run_dir / 'epoch_1.pth')
    data = bytearray(open(corrupt, 'rb').read())
    data[200] ^= 0xFF  # one flipped byte inside a member: its CRC no longer matches
    open(corrupt, 'wb').write(bytes(data))
    assert not is_complete_checkpoint(corrupt)
    open(tmp_path / 'empty.pth', 'wb').close()
    assert not is_complete_checkpoint(str(tmp_path / 'empty.pth'))
    assert not is_complete_checkpoint(str(tmp_path / 'missing.pth'))


def test_resume_picks_the_newest_complete_checkpoint(run_dir):
    assert checkpoint_candidates(str(run_dir))[0].endswith('epoch_3.pth')
    assert find_resumable_checkpoint(str(run_dir)) == str(run_dir / 'epoch_3.pth')
    _truncate(str(run_dir / 'epoch_3.pth'))  # killed while writing epoch 3
    assert find_resumable_checkpoint(str(run_dir)) == str(run_dir / 'epoch_2.pth')
    (run_dir / 'last_checkpoint').write_text('')  # killed while writing last_checkpoint
    assert read_last_checkpoint(str(run_dir)) is None
    assert find_resumable_checkpoint(str(run_dir)) == str(run_dir / 'epoch_2.pth')
    os.remove(run_dir / 'epoch_2.pth')  # max_keep_ckpts removed it before the kill
    os.remove(run_dir / 'epoch_1.pth')
    assert find_resumable_checkpoint(str(run_dir)) is None
    assert find_resumable_checkpoint(str(run_dir / 'nonexistent')) is None


def test_last_checkpoint_with_another_name_template(tmp_path):
    _runner_like_checkpoint(str(tmp_path / 'model_final.pth'), 5)
    (tmp_path / 'last_checkpoint').write_text('model_final.pth')  # relative, from another cwd
    assert find_resumable_checkpoint(str(tmp_path)) == str(tmp_path / 'model_final.pth')


def test_weights_only_load_needs_and_gets_the_allow_list(run_dir):
    path = str(run_dir / 'epoch_2.pth')
    with pytest.raises(pickle.UnpicklingError, match='Weights only load failed'):
        torch.load(path)  # torch >= 2.6 default: weights_only=True
    before = torch.serialization.get_safe_globals()
    with allow_mmengine_checkpoints():
        checkpoint = torch.load(path)
    assert set(torch.serialization.get_safe_globals()) == set(before)  # scoped: nothing left
    assert checkpoint['meta']['epoch'] == 2 and checkpoint['meta']['seed'] == 3
    assert checkpoint['message_hub']['log_scalars']['train/loss'].mean() == 0.75
    assert torch.equal(checkpoint['state_dict']['w'], torch.full((3,), 2.0))
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)  # refused again outside the block


class _Evil:
    def __reduce__(self):
        return getattr, (np.ndarray, 'tofile')  # an allowed class, a method that writes files


class _Sneaky:
    def __reduce__(self):
        return getattr, (HistoryBuffer, '__init__')


@pytest.mark.parametrize('payload', [_Evil(), _Sneaky()])
def test_allow_list_refuses_other_lookups(payload):
    buffer = io.BytesIO()
    torch.save({'x': payload}, buffer)
    buffer.seek(0)
    with allow_mmengine_checkpoints(), pytest.raises(pickle.UnpicklingError):
        torch.load(buffer)
    with pytest.raises(pickle.UnpicklingError, match='statistics methods'):
        history_buffer_getattr(HistoryBuffer, '__init__')
    assert history_buffer_getattr(HistoryBuffer, 'mean') is HistoryBuffer.mean


def test_allow_list_is_exactly_what_runner_checkpoints_hold(run_dir):
    needed = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(run_dir / 'epoch_1.pth')))
    names = {entry[1] if isinstance(entry, tuple) else f'{entry.__module__}.{entry.__qualname__}'
             for entry in mmengine_checkpoint_globals()}
    assert needed <= names
    extra = {n for n in names - needed if not n.startswith('numpy.dtypes.')}
    assert extra <= {'numpy.core.multiarray.scalar', 'numpy._core.multiarray.scalar',
                     'numpy.dtype', 'numpy.ndarray'}


def test_cpu_distributed_preparation_is_a_no_op_without_a_launcher():
    from mmengine.config import Config
    cfg = Config(dict(launcher='none', model_wrapper_cfg=None))
    assert prepare_cpu_distributed(cfg) is False and cfg.model_wrapper_cfg is None
    assert issubclass(CPUDistributedDataParallel, torch.nn.parallel.DistributedDataParallel)


def test_resume_option(run_dir, tmp_path):
    from mmengine.config import Config

    from mmregnet.runtime import resolve_resume
    cfg = Config(dict(work_dir=str(run_dir), resume=False, load_from=None))
    assert resolve_resume(cfg, None) is None and cfg.resume is False
    assert resolve_resume(cfg, 'auto') == str(run_dir / 'epoch_3.pth')
    assert cfg.resume is True and cfg.load_from == str(run_dir / 'epoch_3.pth')
    fresh = Config(dict(work_dir=str(tmp_path / 'new'), resume=False, load_from=None))
    assert resolve_resume(fresh, 'auto') is None and fresh.resume is False
    with pytest.raises(FileNotFoundError, match='--resume checkpoint .* does not exist'):
        resolve_resume(fresh, str(tmp_path / 'missing.pth'))


def test_load_config_applies_the_command_line(tmp_path):
    import argparse

    from mmregnet.runtime import add_common_args, load_config
    config = tmp_path / 'cfg.py'
    config.write_text("default_scope = 'mmdet3d'\ncustom_imports = dict(imports=['json'])\n"
                      "train_cfg = dict(max_epochs=3)\n")
    parser = argparse.ArgumentParser()
    add_common_args(parser)
    args = parser.parse_args([str(config), '--cfg-options', 'train_cfg.max_epochs=1',
                              'custom_imports.imports=[json,mailbox]'])
    sys.modules.pop('mailbox', None)
    cfg = load_config(args)
    assert cfg.train_cfg.max_epochs == 1 and cfg.launcher == 'none'
    assert cfg.work_dir == os.path.join('work_dirs', 'cfg')
    assert 'mailbox' in sys.modules  # the import added on the command line ran
    with pytest.raises(FileNotFoundError, match='does not exist'):
        load_config(parser.parse_args([str(tmp_path / 'missing.py')]))
