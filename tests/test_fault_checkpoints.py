"""Checkpoints whole or not at all (mmregnet.runtime.atomic_saves): a save the machine fails,
at any byte or step, leaves every earlier checkpoint and last_checkpoint as they were and no
partial file, even the one max_keep_ckpts or a new best retires; --resume then reaches the
weights of an uninterrupted run. Then the tools: tools/train.py and tools/test.py with writes
failing in a subprocess (one line, exit 1), the export, and the issue's scenario: the demo
config trained for two epochs on a disk with room for one checkpoint.
"""
import contextlib
import os
import subprocess
import sys
import uuid

import pytest
import torch
from mmengine.evaluator import BaseMetric
from mmengine.hooks import CheckpointHook
from mmengine.logging import MessageHub
from mmengine.model import BaseModel
from mmengine.runner import Runner

from mmregnet.compat import allow_mmengine_checkpoints
from mmregnet.faults import WriteError
from mmregnet.runtime import find_resumable_checkpoint, is_complete_checkpoint
from mmregnet.runtime.atomic_saves import AtomicCheckpointHook
from mmregnet.runtime.portable_checkpoint import PortableCheckpointHook

from test_faults import CAUSES, ENV, REPO, WHERE, error_line, failing, inject, room, tmpfs

TRAIN = os.path.join(REPO, 'tools', 'train.py')
TEST = os.path.join(REPO, 'tools', 'test.py')


# --- a toy run of mmengine's Runner, in this process -----------------------------------------

class ToyModel(BaseModel):
    """A linear regression: the smallest model with weights and optimizer state."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)

    def forward(self, inputs, labels, mode='tensor'):
        out = self.linear(torch.stack(inputs))
        if mode == 'loss':
            return {'loss': ((out - torch.stack(labels)) ** 2).mean()}
        return list(out)


class ToyData(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return dict(inputs=torch.randn(4, generator=g), labels=torch.randn(2, generator=g))


class EpochScore(BaseMetric):
    """A score equal to the epoch: every evaluation saves a new best checkpoint."""

    default_prefix = 'toy'

    def process(self, data_batch, data_samples):
        self.results.append(0)

    def compute_metrics(self, results):
        return dict(score=float(MessageHub.get_current_instance().get_info('epoch')))


def toy_train(work, resume=False, epochs=2, hook=AtomicCheckpointHook):
    """Trains the toy model in ``work`` (resuming from its newest whole checkpoint)."""
    loader = dict(dataset=ToyData(), batch_size=4, num_workers=0,
                  sampler=dict(type='DefaultSampler', shuffle=True))
    checkpoint = find_resumable_checkpoint(str(work)) if resume else None
    torch.manual_seed(0)  # the model is built before the Runner seeds
    runner = Runner(
        model=ToyModel(), work_dir=str(work), experiment_name=f'toy_{uuid.uuid4().hex}',
        train_dataloader=loader, val_dataloader=loader, val_evaluator=[EpochScore()],
        train_cfg=dict(by_epoch=True, max_epochs=epochs, val_interval=1), val_cfg=dict(),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9)),
        default_hooks=dict(checkpoint=dict(type=hook, interval=1,
                                           max_keep_ckpts=1, save_best='toy/score',
                                           rule='greater')),
        custom_hooks=[dict(type=PortableCheckpointHook)], randomness=dict(seed=0),
        load_from=checkpoint, resume=checkpoint is not None)
    with allow_mmengine_checkpoints():
        runner.train()
    return runner.model.state_dict()


def checkpoints(work):
    names = sorted(n for n in os.listdir(work) if n.endswith('.pth') or n.endswith('.part'))
    assert all(is_complete_checkpoint(os.path.join(work, n)) for n in names), names
    return names


def last_checkpoint(work):
    with open(os.path.join(work, 'last_checkpoint')) as f:
        return os.path.basename(f.read())


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope='module')
def toy_reference(tmp_path_factory):
    work = tmp_path_factory.mktemp('toy_reference')
    weights = toy_train(work)
    return weights, {name: os.path.getsize(work / name) for name in (REGULAR, BEST)}


# Where a save of epoch 2 fails: (errno, step, bytes written first: a count or a fraction).
POINTS = [('ENOSPC', 'write', 0), ('ENOSPC', 'write', 1), ('ENOSPC', 'write', 0.5),
          ('ENOSPC', 'write', 0.99), ('EDQUOT', 'write', 0.9), ('EIO', 'write', 100),
          ('EIO', 'sync', 0), ('EROFS', 'rename', 0), ('EACCES', 'create', 0)]
# The regular save, and the new best (whose predecessor mmengine removes before saving it).
REGULAR, BEST = 'epoch_2.pth', 'best_toy_score_epoch_2.pth'
MATCH = {REGULAR: r'/\.?epoch_2\.pth', BEST: r'best_toy_score_epoch_2'}


@pytest.mark.parametrize('target, code, at, after', [
    *[(REGULAR, *point) for point in POINTS],
    *[(BEST, *point) for point in POINTS[2:4] + POINTS[6:8]]])
def test_a_failed_save_keeps_what_was_there_and_resume_continues(
        toy_reference, tmp_path, target, code, at, after):
    weights, sizes = toy_reference
    size = sizes[target]
    with failing(MATCH[target], code, at, int(after * size) if isinstance(after, float) else
                 after), pytest.raises(WriteError) as caught:
        toy_train(tmp_path)
    line = str(caught.value)
    assert line.startswith(f'cannot write {tmp_path / target}{WHERE[at]}: {CAUSES[code]}')
    if code == 'ENOSPC':
        assert abs(room(line)[0] - size) < size // 20  # the checkpoint's own size
    if target == REGULAR:  # epoch 1's checkpoints, max_keep_ckpts=1 notwithstanding
        assert checkpoints(tmp_path) == ['best_toy_score_epoch_1.pth', 'epoch_1.pth']
        assert last_checkpoint(tmp_path) == 'epoch_1.pth'
    else:  # epoch 2 saved; the best of epoch 1 kept, as no new best was written
        assert checkpoints(tmp_path) == ['best_toy_score_epoch_1.pth', 'epoch_2.pth']
        assert last_checkpoint(tmp_path) == 'epoch_2.pth'
    before = checkpoints(tmp_path)
    assert same_weights(toy_train(tmp_path, resume=True), weights)
    # A resume past the failed regular save redoes epoch 2 (and its best); after a failed best
    # there is nothing left to train.
    assert checkpoints(tmp_path) == (['best_toy_score_epoch_2.pth', 'epoch_2.pth']
                                     if target == REGULAR else before)


def test_mmengines_hook_alone_loses_the_last_good_checkpoint(toy_reference, tmp_path):
    """The reference: the same failure under mmengine's CheckpointHook."""
    with failing(MATCH[REGULAR], 'ENOSPC', after=toy_reference[1][REGULAR] // 2), \
            pytest.raises(OSError):
        toy_train(tmp_path, hook=CheckpointHook)
    names = sorted(n for n in os.listdir(tmp_path) if n.endswith('.pth'))
    assert names == ['best_toy_score_epoch_1.pth', 'epoch_2.pth']  # epoch_1.pth deleted first
    assert not is_complete_checkpoint(str(tmp_path / 'epoch_2.pth'))  # and this one torn


def test_a_killed_runs_temporary_is_removed_by_the_next_run(tmp_path):
    dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                          capture_output=True, text=True).stdout.strip()
    (tmp_path / f'.epoch_1.pth.{dead}.x1y2.part').write_bytes(b'PK\x03\x04 half')
    toy_train(tmp_path, epochs=1)
    assert checkpoints(tmp_path) == ['best_toy_score_epoch_1.pth', 'epoch_1.pth']
    log = next(p for p in tmp_path.rglob('*.log'))
    assert f'.epoch_1.pth.{dead}.x1y2.part, left unfinished by a killed run' in log.read_text()


@pytest.mark.parametrize('hooks, expected', [
    (None, 'mmregnet.AtomicCheckpointHook'),  # mmengine's default hook, made atomic
    (dict(checkpoint=dict(type='CheckpointHook', interval=3, max_keep_ckpts=2)),
     'mmregnet.AtomicCheckpointHook'),
    (dict(checkpoint=dict(type='mmengine.CheckpointHook')), 'mmregnet.AtomicCheckpointHook'),
    (dict(checkpoint=dict(type='MyCheckpointHook')), 'MyCheckpointHook'),  # the user's own
    (dict(checkpoint=None), None)])  # turned off
def test_the_tools_make_only_mmengines_checkpoint_hook_atomic(hooks, expected):
    from mmengine.config import Config
    from mmregnet.runtime.atomic_saves import use_atomic_saves
    cfg = Config(dict(default_hooks=hooks) if hooks is not None else {})
    assert use_atomic_saves(cfg) == (expected == 'mmregnet.AtomicCheckpointHook')
    hook = cfg.get('default_hooks', {}).get('checkpoint')
    assert (hook and hook['type']) == expected
    if hooks and hooks['checkpoint'] and 'interval' in hooks['checkpoint']:
        assert (hook.interval, hook.max_keep_ckpts) == (3, 2)  # the rest kept


# --- the tools, in subprocesses --------------------------------------------------------------

BARS = os.path.join(REPO, 'configs', 'classification', 'regnetx-tiny_1xb32-6e_bars.py')


@pytest.fixture(scope='module')
def bars(tmp_path_factory):
    """The tiny classifier config on 32 images: two epochs, a checkpoint each, and its weights."""
    from mmregnet.synthetic.images import ImageSetSpec, generate_images
    root = tmp_path_factory.mktemp('bars')
    generate_images(ImageSetSpec(train_per_class=8, val_per_class=2), str(root / 'data'))
    options = ['--cfg-options', 'train_cfg.max_epochs=2', 'train_dataloader.batch_size=8',
               'default_hooks.checkpoint.interval=1', 'default_hooks.logger.interval=1',
               *[f'{loader}.dataset.data_root={root / "data"}'
                 for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]]
    work = root / 'reference'
    done = subprocess.run([sys.executable, TRAIN, BARS, '--work-dir', str(work), *options],
                          env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return options, work


def _weights(path):
    with allow_mmengine_checkpoints():
        return torch.load(path, map_location='cpu')['state_dict']


@pytest.mark.parametrize('code, at, after', [
    ('ENOSPC', 'write', 200_000),
    pytest.param('EIO', 'sync', 0, marks=pytest.mark.slow),
    pytest.param('EROFS', 'rename', 0, marks=pytest.mark.slow)])
def test_train_tool_exits_1_with_one_line_and_resumes(bars, tmp_path, code, at, after):
    options, reference = bars
    work = tmp_path / 'run'
    result = inject(TRAIN, BARS, '--work-dir', work, *options, match=r'/\.?epoch_2\.pth',
                    code=code, at=at, after=after)
    line = error_line(result, 'tools/train.py')
    assert line.startswith(f'tools/train.py: error: cannot write {work / "epoch_2.pth"}'
                           f'{WHERE[at]}: {CAUSES[code]}')
    if code == 'ENOSPC':
        needed, free = room(line)
        assert abs(needed - os.path.getsize(reference / 'epoch_2.pth')) < 10_000 and free > 0
    assert line[len('tools/train.py: error: '):] in result.stdout  # logged by the run too
    assert checkpoints(work) == ['epoch_1.pth'] and last_checkpoint(work) == 'epoch_1.pth'
    resumed = subprocess.run([sys.executable, TRAIN, BARS, '--work-dir', str(work), '--resume',
                              *options], env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert checkpoints(work) == ['epoch_1.pth', 'epoch_2.pth']
    assert same_weights(_weights(work / 'epoch_2.pth'), _weights(reference / 'epoch_2.pth'))


@pytest.mark.parametrize('flag, name, code, at', [
    ('--out', 'pred.pkl', 'ENOSPC', 'write'),
    pytest.param('--metrics-out', 'metrics.json', 'EIO', 'sync', marks=pytest.mark.slow)])
def test_test_tool_outputs_fail_whole(bars, tmp_path, flag, name, code, at):
    options, reference = bars
    out = tmp_path / name
    result = inject(TEST, BARS, reference / 'epoch_2.pth', '--work-dir', tmp_path / 'work',
                    flag, out, *options, match=name.replace('.', r'\.'), code=code, at=at,
                    after=10)
    line = error_line(result, 'tools/test.py')
    assert line.startswith(f'tools/test.py: error: cannot write {out}{WHERE[at]}: '
                           f'{CAUSES[code]}')
    assert os.listdir(tmp_path) == ['work']


# --- the export ----------------------------------------------------------------------------

NUS = os.path.join(REPO, 'configs', 'regnet',
                   'pointpillars_hv_regnet-400mf_fpn_sbn-all_1xb4-demo_nus-3d.py')
EXPORT = os.path.join(REPO, 'tools', 'deployment', 'export_detector.py')


@pytest.fixture(scope='module')
def untrained(tmp_path_factory):
    from mmregnet.runtime.launch import save_untrained_checkpoint
    path = str(tmp_path_factory.mktemp('export') / 'untrained.pth')
    save_untrained_checkpoint(NUS, path)
    return path


@pytest.mark.parametrize('match, code, at, after', [
    (r'detector\.onnx$', 'ENOSPC', 'write', 100_000),
    pytest.param(r'detector\.json$', 'EIO', 'write', 10, marks=pytest.mark.slow),
    pytest.param(r'/\.?exported[.\w]*$', 'EROFS', 'rename', 0, marks=pytest.mark.slow)])
def test_export_fails_whole(untrained, tmp_path, match, code, at, after):
    out = tmp_path / 'exported'
    line = error_line(inject(EXPORT, NUS, untrained, '--out', out, match=match, code=code,
                             at=at, after=after), 'export_detector.py')
    where = WHERE[at] if at == 'rename' else ''
    assert line.startswith(f'export_detector.py: error: cannot write {out}{where}: '
                           f'{CAUSES[code]}')
    if code == 'ENOSPC':
        assert 'needs more than the ' in line
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_export_on_a_real_full_disk(untrained):
    with tmpfs(1 << 20) as disk:  # the graph alone is several MB
        out = os.path.join(disk, 'exported')
        result = subprocess.run([sys.executable, EXPORT, NUS, untrained, '--out', out], env=ENV,
                                capture_output=True, text=True)
        line = error_line(result, 'export_detector.py')
        assert line.startswith(f'export_detector.py: error: cannot write {out}: no space left')
        assert room(line) == (None, 1 << 20) and os.listdir(disk) == []


# --- the scenario: the demo config, two epochs, room for one checkpoint ----------------

@pytest.fixture(scope='module')
def demo_data(tmp_path_factory):
    """tools/demo.py's dataset, smallest: one training scene of two samples, one sweep each."""
    from mmregnet.synthetic import DatasetSpec, Options, generate
    root = str(tmp_path_factory.mktemp('demo') / 'nuscenes')
    generate(DatasetSpec('nuscenes', Options(
        samples_per_scene=2, sweeps_per_sample=1, annotation_range=12.8, seed=0,
        azimuth_steps=720, max_range=40.0), dict(train=1, val=1), max_sweeps=1), root)
    return root


def _demo_options(data_root):
    # One worker process: its augmentation draws restart from the seed each epoch, so a
    # resumed epoch 2 draws what an uninterrupted one does.
    return ['--cfg-options', f'train_dataloader.dataset.data_root={data_root}',
            'train_cfg.max_epochs=2', 'param_scheduler.1.T_max=2', 'param_scheduler.1.end=2',
            'train_dataloader.batch_size=2', 'train_dataloader.num_workers=1',
            'default_hooks.logger.interval=1']


def _train(*args, **kwargs):
    return subprocess.run([sys.executable, TRAIN, NUS, *map(str, args)], env=ENV,
                          capture_output=True, text=True, **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize('disk', ['tmpfs', 'injected'])
def test_demo_two_epochs_with_room_for_one_checkpoint(demo_data, tmp_path, disk):
    options = _demo_options(demo_data)
    reference = tmp_path / 'reference'
    done = _train('--work-dir', reference, *options)
    assert done.returncode == 0, done.stderr[-3000:]
    size = os.path.getsize(reference / 'epoch_2.pth')
    with contextlib.ExitStack() as stack:
        if disk == 'tmpfs':  # room for one checkpoint, its logs and half of another
            folder = stack.enter_context(tmpfs(size * 3 // 2))
            work = os.path.join(folder, 'work')
            result = _train('--work-dir', work, *options)
        else:
            work = str(tmp_path / 'work')
            result = inject(TRAIN, NUS, '--work-dir', work, *options, match=r'/\.?epoch_2\.pth',
                            after=size // 2)
        line = error_line(result, 'tools/train.py')
        path = os.path.join(work, 'epoch_2.pth')
        assert line.startswith(f'tools/train.py: error: cannot write {path}: no space left on '
                               'its file system (needs ')
        needed, free = room(line)  # an injected failure finds this disk's real room free
        assert abs(needed - size) < 10_000 and 0 < free and (free < needed) == (disk == 'tmpfs')
        assert checkpoints(work) == ['epoch_1.pth'] and last_checkpoint(work) == 'epoch_1.pth'
        if disk == 'tmpfs':  # make room
            subprocess.run(['mount', '-o', f'remount,size={size * 4}', folder], check=True)
        resumed = _train('--work-dir', work, '--resume', *options)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert checkpoints(work) == ['epoch_1.pth', 'epoch_2.pth']
        assert same_weights(_weights(path), _weights(reference / 'epoch_2.pth'))
