"""The main job, small: tools/demo.py (generate, info files, train, evaluate trained and
untrained with the nuScenes devkit metric, picture), a SIGKILL mid-checkpoint and --resume,
2-process training with tools/dist_train.sh, and the Lyft path through LyftMetric."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from mmregnet.runtime import is_complete_checkpoint

pytestmark = pytest.mark.slow  # trains and evaluates PointPillars with the tools

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, 'configs', 'regnet')
NUS = os.path.join(CONFIGS, 'pointpillars_hv_regnet-400mf_fpn_sbn-all_1xb4-demo_nus-3d.py')
LYFT = os.path.join(CONFIGS, 'pointpillars_hv_regnet-400mf_fpn_sbn-all_1xb2-demo_lyft-3d.py')
ENV = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=os.pathsep.join(
    [os.path.join(REPO, 'tests'), REPO, os.environ.get('PYTHONPATH', '')]))
TRAIN_SCENES, SAMPLES = 2, 3  # 6 training samples


def _small(data_root, batch=2, nuscenes=True):
    """--cfg-options that point a demo config at a tiny dataset and keep the run tiny."""
    options = [f'train_dataloader.dataset.data_root={data_root}',
               f'test_dataloader.dataset.data_root={data_root}',
               f'test_evaluator.data_root={data_root}', f'train_dataloader.batch_size={batch}',
               'train_dataloader.num_workers=0', 'test_dataloader.num_workers=0',
               'default_hooks.logger.interval=1']
    if nuscenes:  # NuScenesMetric takes the info file's full path
        options.append(f'test_evaluator.ann_file={data_root}/nuscenes_infos_val.pkl')
    return options


def _tool(name, *args, check=True, **kwargs):
    return subprocess.run([sys.executable, os.path.join(REPO, 'tools', name), *args], env=ENV,
                          check=check, text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, **kwargs)


def _load(path):
    from mmregnet.compat import allow_mmengine_checkpoints
    with allow_mmengine_checkpoints():
        return torch.load(path, map_location='cpu')


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    work = tmp_path_factory.mktemp('demo')
    data_root = str(work / 'nuscenes')
    result = _tool('demo.py', '--work-dir', str(work / 'run'), '--data-root', data_root,
                   '--train-scenes', str(TRAIN_SCENES), '--val-scenes', '1',
                   '--samples-per-scene', str(SAMPLES), '--epochs', '2', '--cfg-options',
                   'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
                   'test_dataloader.num_workers=0', check=False)
    assert result.returncode == 0, result.stdout[-4000:]
    return work, data_root, result.stdout


def test_demo_leaves_checkpoint_metrics_and_picture(demo):
    work, data_root, output = demo
    run = work / 'run'
    summary = json.loads((run / 'summary.json').read_text())
    for name in ('trained', 'untrained'):
        assert 0.0 <= summary[name]['mAP'] <= 1.0 and 0.0 <= summary[name]['NDS'] <= 1.0
        metrics = json.loads((run / f'metrics_{name}.json').read_text())
        assert 'NuScenes metric/pred_instances_3d_NuScenes/car_AP_dist_2.0' in metrics
    assert is_complete_checkpoint(summary['checkpoint'])
    meta = _load(summary['checkpoint'])['meta']
    assert (meta['epoch'], meta['iter']) == (2, 2 * TRAIN_SCENES * SAMPLES // 2)
    from PIL import Image
    with Image.open(summary['picture']) as picture:
        assert picture.format == 'PNG' and picture.size[0] > 500
    assert os.path.isfile(os.path.join(data_root, 'nuscenes_infos_val.pkl'))
    # Progress stays visible: every step's header, training logs, the devkit's table.
    assert all(f' s] {step} ' in output for step in ('1/5', '2/5', '3/5', '4/5', '5/5'))
    assert 'Epoch(train)' in output and 'Per-class results' in output


def test_sigkill_mid_checkpoint_then_resume(demo, tmp_path):
    _, data_root, _ = demo
    work = tmp_path / 'train'
    options = _small(data_root) + [
        'train_cfg.max_epochs=3', 'custom_imports.imports=[mmregnet,test_train_checkpoints]',
        'default_hooks.checkpoint.backend_args.backend=slow_local']
    command = [sys.executable, os.path.join(REPO, 'tools', 'train.py'), NUS, '--work-dir',
               str(work), '--cfg-options', *options]
    env = dict(ENV, SLOW_CHECKPOINT_PAUSE='0.3')  # a checkpoint takes 6 s to write
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.STDOUT)
    first, second = work / 'epoch_1.pth', work / 'epoch_2.pth'
    deadline = time.time() + 300
    while not (list(work.glob('.epoch_2.pth.*.part')) and is_complete_checkpoint(str(first))):
        assert process.poll() is None, 'training ended before it could be killed'
        assert time.time() < deadline, 'no second checkpoint write within 300 s'
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)  # mid-write of epoch_2.pth, after epoch_1.pth
    process.wait()
    part, = work.glob('.epoch_2.pth.*.part')  # written beside its name, never under it
    assert not second.exists()
    assert (work / 'last_checkpoint').read_text().endswith('epoch_1.pth')

    resumed = _tool('train.py', NUS, '--work-dir', str(work), '--resume', '--cfg-options',
                    *_small(data_root), 'train_cfg.max_epochs=3', check=False)
    assert resumed.returncode == 0, resumed.stdout[-4000:]
    assert f'resuming from {first}' in resumed.stdout
    assert f'removed {part}, left unfinished by a killed run' in resumed.stdout
    assert 'resumed epoch: 1, iter: 3' in resumed.stdout
    assert 'Epoch(train) [1]' not in resumed.stdout.replace('  ', ' ')
    meta = _load(str(work / 'epoch_3.pth'))['meta']
    assert (meta['epoch'], meta['iter']) == (3, 9)
    assert is_complete_checkpoint(str(second)) and not list(work.glob('.*.part'))


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return str(s.getsockname()[1])


def test_two_process_training_then_evaluation(demo, tmp_path):
    _, data_root, _ = demo
    work = tmp_path / 'dist'
    env = dict(ENV, PORT=_free_port(), PYTHON=sys.executable)
    result = subprocess.run(
        ['bash', os.path.join(REPO, 'tools', 'dist_train.sh'), NUS, '2', '--work-dir', str(work),
         '--cfg-options', *_small(data_root, batch=1), 'train_cfg.max_epochs=1'],
        env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert result.returncode == 0, result.stdout[-4000:]
    assert 'Distributed training: True' in result.stdout
    assert 'GPU number: 2' in result.stdout  # mmengine's name for the world size
    meta = _load(str(work / 'epoch_1.pth'))['meta']
    # 6 samples, 2 processes with 1 sample each per step: 3 steps instead of 6.
    assert meta['iter'] == TRAIN_SCENES * SAMPLES // 2
    metrics_file = str(tmp_path / 'metrics.json')
    _tool('test.py', NUS, str(work / 'epoch_1.pth'), '--work-dir', str(tmp_path / 'test'),
          '--metrics-out', metrics_file, '--cfg-options', *_small(data_root))
    metrics = json.loads(open(metrics_file).read())
    assert 0.0 <= metrics['NuScenes metric/pred_instances_3d_NuScenes/NDS'] <= 1.0


def test_lyft_path_through_lyft_metric(tmp_path):
    from mmregnet.runtime.launch import save_untrained_checkpoint
    root = str(tmp_path / 'lyft')
    _tool('create_synthetic_data.py', 'lyft', '--root', root, '--train-scenes', '1',
          '--val-scenes', '1', '--samples-per-scene', '2', '--annotation-range', '12.8',
          '--azimuth-steps', '360', '--quiet')
    checkpoint = str(tmp_path / 'untrained.pth')
    save_untrained_checkpoint(LYFT, checkpoint)
    metrics_file = str(tmp_path / 'metrics.json')
    result = _tool('test.py', LYFT, checkpoint, '--work-dir', str(tmp_path / 'test'),
                   '--metrics-out', metrics_file, '--cfg-options',
                   *_small(root + '/', nuscenes=False),
                   check=False)
    assert result.returncode == 0, result.stdout[-4000:]
    assert 'mAPs@0.5:0.95' in result.stdout  # the Lyft evaluation's table
    metrics = json.loads(open(metrics_file).read())
    assert 0.0 <= metrics['Lyft metric/pred_instances_3d_Lyft/mAP'] <= 1.0
