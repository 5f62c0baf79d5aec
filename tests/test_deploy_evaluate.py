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

pytestmark = pytest.mark.slow  # evaluates exported detectors with the config's metric

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
    from norms import randomize_norms
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
    # Its test settings are frozen into the graph: a config asking for others is refused.
    other = _tool('test.py', NUS, str(work / 'onnx'), '--backend', 'onnxruntime',
                  '--work-dir', str(work / 'other'), '--cfg-options',
                  'model.test_cfg.pts.max_num=50', *setup[2])
    assert other.returncode == 1, other.stdout[-3000:]
    last = other.stdout.strip().splitlines()[-1]
    assert "'max_num': 50" in last and 'export the detector again with this config' in last


def test_bad_backend_arguments_exit_one_or_two(setup):
    work, checkpoint, options = setup
    missing = _tool('test.py', NUS, str(work / 'nope'), '--backend', 'onnxruntime')
    assert missing.returncode == 1
    assert 'checkpoint file or export folder' in missing.stdout.strip().splitlines()[-1]
    usage = _tool('test.py', NUS, checkpoint, '--providers', 'CPUExecutionProvider')
    assert usage.returncode == 2 and '--providers applies to --backend onnxruntime' in usage.stdout
    old = work / 'format2'  # a folder of the split deployment, before the one graph
    old.mkdir()
    (old / 'detector.onnx').write_bytes(b'')
    (old / 'detector.json').write_text(json.dumps(dict(format='mmregnet-onnx-detector',
                                                       version=2)))
    refused = _tool('test.py', NUS, str(old), '--backend', 'onnxruntime', '--work-dir',
                    str(work / 'format2-run'), '--cfg-options', *options)
    assert refused.returncode == 1, refused.stdout[-3000:]
    assert 'export the detector again' in refused.stdout.strip().splitlines()[-1]
    provider = _tool('test.py', NUS, checkpoint, '--backend', 'onnxruntime', '--providers',
                     'TensorrtExecutionProvider', '--work-dir', str(work / 'trt'),
                     '--cfg-options', *options)
    assert provider.returncode == 1
    assert "provider 'TensorrtExecutionProvider' is not available" in provider.stdout


def test_an_int8_export_calibrated_on_the_train_split_evaluates(setup):
    # The export reads its calibration clouds from the config's train split (the
    # generated dataset here) and the evaluation runs the int8 graph.
    work, checkpoint, options = setup
    root = options[0].split('=', 1)[1]
    train = [f'train_dataloader.dataset.data_root={root}']
    folder = str(work / 'int8')
    exported = _tool('deployment/export_detector.py', NUS, checkpoint, '--out', folder, '--int8',
                     '--calibration-frames', '2', '--check', '2000', '--cfg-options', *train)
    assert exported.returncode == 0, exported.stdout[-3000:]
    assert '(int8,' in exported.stdout and 'CPUExecutionProvider, int8' in exported.stdout
    manifest = json.loads((work / 'int8' / 'detector.json').read_text())
    assert manifest['precision'] == 'int8'
    assert manifest['calibration'] == dict(frames=2, source='train split')
    metrics, preds, _ = _evaluate(setup, 'int8', folder, '--backend', 'onnxruntime')
    assert 'NuScenes metric/pred_instances_3d_NuScenes/NDS' in metrics and len(preds) == 3


def test_int8_without_its_calibration_split_fails_in_one_line(setup):
    work, checkpoint, _ = setup
    out = work / 'int8-missing'
    result = _tool('deployment/export_detector.py', NUS, checkpoint, '--out', str(out), '--int8',
                   '--cfg-options', 'train_dataloader.dataset.data_root=/nonexistent/')
    assert result.returncode == 1, result.stdout[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    assert 'cannot read the train split to calibrate on' in last and '/nonexistent/' in last
    assert not out.exists() and not list(work.glob('int8-missing*'))
    usage = _tool('deployment/export_detector.py', NUS, checkpoint, '--out', str(out), '--int8',
                  '--calibration-frames', '0')
    assert usage.returncode == 2 and '--calibration-frames must be >= 1, got 0' in usage.stdout
