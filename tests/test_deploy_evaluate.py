"""``tools/test.py --backend onnxruntime``: the config's dataset and nuScenes metric on the
exported detector give the metrics and predictions of the PyTorch backend.

A small synthetic nuScenes-format dataset (mmregnet.synthetic, info files by
mmdet3d's converter) and the demo config with random weights and random
BatchNorm statistics; the demo's decoder submits its 100 best boxes per sample.
"""
import json
import os
import pickle
import subprocess
import sys

import pytest
import torch

pytest.importorskip('onnxruntime')

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUS = os.path.join(REPO, 'configs', 'regnet',
                   'pointpillars_hv_regnet-400mf_fpn_sbn-all_1xb4-demo_nus-3d.py')
ENV = dict(os.environ, OMP_NUM_THREADS='1',
           PYTHONPATH=os.pathsep.join([REPO, os.environ.get('PYTHONPATH', '')]))


def _tool(name, *args):
    return subprocess.run([sys.executable, os.path.join(REPO, 'tools', name), *args], env=ENV,
                          text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    from mmregnet.benchmark.backbone import randomize_norms
    from mmregnet.deploy.configs import build_detector, load_detector_config
    work = tmp_path_factory.mktemp('evaluate')
    root = str(work / 'nuscenes')
    made = _tool('create_synthetic_data.py', 'nuscenes', '--root', root, '--train-scenes', '1',
                 '--val-scenes', '1', '--samples-per-scene', '3', '--sweeps', '1',
                 '--annotation-range', '12.8', '--azimuth-steps', '720', '--quiet')
    assert made.returncode == 0, made.stdout[-3000:]
    torch.manual_seed(0)
    model = randomize_norms(build_detector(load_detector_config(NUS)), seed=2)
    checkpoint = str(work / 'random.pth')
    torch.save({'meta': {'epoch': 0}, 'state_dict': model.state_dict()}, checkpoint)
    options = [f'test_dataloader.dataset.data_root={root}/', f'test_evaluator.data_root={root}/',
               f'test_evaluator.ann_file={root}/nuscenes_infos_val.pkl',
               'test_dataloader.num_workers=0']
    return work, checkpoint, options


def _evaluate(setup, name, *extra):
    work, checkpoint, options = setup
    metrics, predictions = work / f'{name}.json', work / f'{name}.pkl'
    result = _tool('test.py', NUS, *extra, '--work-dir', str(work / name), '--metrics-out',
                   str(metrics), '--out', str(predictions), '--cfg-options', *options)
    assert result.returncode == 0, result.stdout[-4000:]
    with open(predictions, 'rb') as f:
        return json.loads(metrics.read_text()), pickle.load(f), result.stdout


def test_onnxruntime_backend_gives_the_pytorch_metrics_and_boxes(setup):
    work, checkpoint, _ = setup
    expected, ref_preds, _ = _evaluate(setup, 'pytorch', checkpoint)
    actual, preds, log = _evaluate(setup, 'onnxruntime', checkpoint, '--backend', 'onnxruntime')
    prefix = 'NuScenes metric/pred_instances_3d_NuScenes/'
    for key in ('NDS', 'mAP'):
        assert abs(actual[prefix + key] - expected[prefix + key]) <= 0.001, key
    assert set(actual) == set(expected)
    assert expected[prefix + 'NDS'] > 0  # not a comparison of two empty submissions
    assert len(preds) == len(ref_preds) == 3
    for e, a in zip(ref_preds, preds):
        e, a = e['pred_instances_3d'], a['pred_instances_3d']
        assert torch.equal(e['labels_3d'], a['labels_3d'])
        for key in ('scores_3d', 'bboxes_3d'):
            want = getattr(e[key], 'tensor', e[key])
            got = getattr(a[key], 'tensor', a[key])
            assert (want - got).abs().max() <= 1e-4 * want.abs().max(), key
    # A folder exported once evaluates the same, without the checkpoint.
    exported = _tool('deployment/export_detector.py', NUS, checkpoint, '--out',
                     str(work / 'onnx'))
    assert exported.returncode == 0, exported.stdout[-3000:]
    again, _, _ = _evaluate(setup, 'folder', str(work / 'onnx'), '--backend', 'onnxruntime')
    assert again[prefix + 'NDS'] == actual[prefix + 'NDS']


def test_bad_backend_arguments_exit_one_or_two(setup):
    work, checkpoint, options = setup
    missing = _tool('test.py', NUS, str(work / 'nope'), '--backend', 'onnxruntime')
    assert missing.returncode == 1
    assert 'checkpoint file or export folder' in missing.stdout.strip().splitlines()[-1]
    usage = _tool('test.py', NUS, checkpoint, '--providers', 'CPUExecutionProvider')
    assert usage.returncode == 2 and '--providers applies to --backend onnxruntime' in usage.stdout
    provider = _tool('test.py', NUS, checkpoint, '--backend', 'onnxruntime', '--providers',
                     'TensorrtExecutionProvider', '--work-dir', str(work / 'trt'),
                     '--cfg-options', *options)
    assert provider.returncode == 1
    assert "provider 'TensorrtExecutionProvider' is not available" in provider.stdout
