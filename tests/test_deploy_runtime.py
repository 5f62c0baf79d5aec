"""The light runtime (numpy + onnxruntime) and ``mmregnet detect`` on a real export folder.

The export is the nuScenes 400MF FPN detector on a 32 x 32 canvas
(tests/detector_inputs.py) with random weights whose class bias sends boxes
to NMS. The runtime must give the graph's boxes in a process where torch,
mmcv, mmengine and mmdet3d cannot be imported.
"""
import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from detector_inputs import point_cloud_batch, shrink_range

pytest.importorskip('onnxruntime')
pytest.importorskip('mmdet3d')

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
NUS = os.path.join(ROOT, 'configs', 'regnet',
                   'pointpillars_hv_regnet-400mf_fpn_sbn-all_8xb4-2x_nus-3d.py')
HEAVY = ('torch', 'mmcv', 'mmengine', 'mmdet', 'mmdet3d')
#: Run before anything else in a child process: importing the training stack fails there.
BLOCKER = f'''
import importlib.abc, sys
class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {HEAVY!r}:
            raise ImportError('blocked for this test: ' + name)
sys.meta_path.insert(0, Blocked())
'''


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """An export folder of the shrunk nuScenes detector and a cloud with boxes in it."""
    from norms import randomize_norms
    from mmregnet.benchmark.detector import calibrate_boxes, detector_inputs
    from mmregnet.deploy.configs import build_detector, load_detector_config
    from mmregnet.deploy.export import export_model
    cfg = shrink_range(load_detector_config(NUS))
    model = build_detector(cfg, init=False).eval()
    randomize_norms(model, seed=3)
    points = point_cloud_batch(cfg, seed=1)['inputs']['points'][0]
    calibrate_boxes(model, detector_inputs([points]), 60)
    folder = str(tmp_path_factory.mktemp('runtime') / 'onnx')
    export_model(model, cfg, folder, config_path=NUS)
    return folder, np.ascontiguousarray(points.numpy())


def _child(code, *args):
    """Runs ``code`` in a fresh Python with the training stack blocked; returns the process."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, '-c', BLOCKER + code, *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=300)


def test_detect_gives_the_graphs_outputs_as_typed_read_only_arrays(exported):
    import onnxruntime as ort

    from mmregnet.deploy import Detections, OnnxDetector
    folder, points = exported
    det = OnnxDetector(folder)
    found = det.detect(points)
    assert isinstance(found, Detections) and len(found) > 5
    session = ort.InferenceSession(os.path.join(folder, 'detector.onnx'),
                                   providers=['CPUExecutionProvider'])
    boxes, scores, labels = session.run(None, dict(points=points))
    assert np.array_equal(found.boxes, boxes) and np.array_equal(found.scores, scores)
    assert np.array_equal(found.labels, labels) and found.labels.dtype == np.int64
    assert found.boxes.shape[1] == det.box_dim == 9 and found.scores.dtype == np.float32
    assert list(found.names) == [det.class_names[i] for i in labels]
    with pytest.raises(ValueError, match='read-only'):
        found.boxes[0, 0] = 1
    both = det.detect([points, points[:100]])
    assert isinstance(both, list) and len(both) == 2
    for again in [both[0]] + [det.detect(points) for _ in range(3)]:  # run to run: bitwise
        assert np.array_equal(again.boxes, boxes) and np.array_equal(again.scores, scores)
    assert len(det.detect(points[:0])) == 0  # an empty cloud: no box, no error


def test_call_gives_mmdet3d_data_samples_of_the_same_boxes(exported):
    import torch
    from mmdet3d.structures import Det3DDataSample, LiDARInstance3DBoxes

    from mmregnet.deploy import OnnxDetector
    folder, points = exported
    det = OnnxDetector(folder)
    found = det.detect(points)
    sample = det(torch.from_numpy(points))
    assert isinstance(sample, Det3DDataSample)
    result = sample.pred_instances_3d
    assert isinstance(result.bboxes_3d, LiDARInstance3DBoxes)
    assert np.array_equal(result.bboxes_3d.tensor.numpy(), found.boxes)
    assert np.array_equal(result.scores_3d.numpy(), found.scores)
    assert np.array_equal(result.labels_3d.numpy(), found.labels)
    assert len(det([points, points])) == 2


def test_detect_runs_without_the_training_stack(exported, tmp_path):
    from mmregnet.deploy import OnnxDetector
    folder, points = exported
    cloud, out = tmp_path / 'cloud.npy', tmp_path / 'found.npz'
    np.save(cloud, points)
    code = '''
import sys
import numpy as np
from mmregnet.deploy import OnnxDetector
det = OnnxDetector(sys.argv[1])
found = det.detect(np.load(sys.argv[2]))
np.savez(sys.argv[3], boxes=found.boxes, scores=found.scores, labels=found.labels,
         names=found.names)
print('LOADED', sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r}))
try:
    det(np.load(sys.argv[2]))
except ImportError as e:
    print('SAMPLE', e)
'''.format(heavy=HEAVY + ('onnx',))
    proc = _child(code, folder, str(cloud), str(out))
    assert proc.returncode == 0, proc.stderr
    assert 'LOADED []' in proc.stdout
    assert 'SAMPLE Det3DDataSample results need mmdet3d' in proc.stdout
    assert 'pip install "mmregnet[3d]", or call detect() for numpy arrays' in proc.stdout
    theirs = np.load(out)
    found = OnnxDetector(folder).detect(points)
    for key in ('boxes', 'scores', 'labels', 'names'):
        assert np.array_equal(theirs[key], getattr(found, key)), key


@pytest.mark.parametrize('make, message', [
    (lambda p: p[:, :3], r'point cloud 0: expected shape \(N, 4\) \(x, y, z and 1 more values per '
                         r"point, as the config's voxel encoder reads\), got \(\d+, 3\)"),
    (lambda p: p[:, 0], r'expected shape \(N, 4\).*got \(\d+,\)'),
    (lambda p: p.astype(np.float64), r'expected float32 values, got float64 \(convert with '
                                     r'points.astype\(np.float32\)\)'),
    (lambda p: p.astype(np.int32), 'expected float32 values, got int32'),
    (lambda p: p.tolist(), r'expected an \(N, 4\) float32 numpy array, got list'),
    (lambda p: np.where(np.arange(len(p))[:, None] % 50 == 7, np.nan, p).astype(np.float32),
     r'point cloud 0: \d+ points hold NaN or inf \(rows \[7, 57, 107\]...\); expected finite '
     'values: drop those points first'),
    (lambda p: np.concatenate([p, [[np.inf, 0, 0, 0]]]).astype(np.float32),
     r'1 points hold NaN or inf \(rows \[\d+\]'),
])
def test_bad_clouds_are_refused_in_one_line(exported, make, message):
    from mmregnet.deploy import DeployError, OnnxDetector
    folder, points = exported
    det = OnnxDetector(folder)
    with pytest.raises(DeployError, match=message) as error:
        det.detect(make(points))
    assert '\n' not in str(error.value)
    with pytest.raises(DeployError, match=message.replace('point cloud 0', 'point cloud 1')):
        det.detect([points, make(points)])


def _folder_with(exported, tmp_path, **manifest_changes):
    folder = tmp_path / 'changed'
    shutil.copytree(exported[0], folder)
    manifest = json.loads((folder / 'detector.json').read_text())
    (folder / 'detector.json').write_text(json.dumps(dict(manifest, **manifest_changes)))
    return str(folder)


def test_folders_of_other_formats_and_graphs_are_refused(exported, tmp_path):
    from mmregnet.deploy import DeployError, OnnxDetector
    cases = [
        (_folder_with(exported, tmp_path / 'v2', version=2),
         r"expected format 'mmregnet-onnx-detector' version 3, got 'mmregnet-onnx-detector' "
         'version 2; export the detector again with this mmregnet'),
        (_folder_with(exported, tmp_path / 'other', format='something-else'),
         r"expected format 'mmregnet-onnx-detector' version 3, got 'something-else'"),
        (_folder_with(exported, tmp_path / 'net', network='0123456789abcdef'),
         r'detector.onnx was exported from config .* \(network [0-9a-f]{16}\), but detector.json '
         r'describes .* \(network 0123456789abcdef\); export the detector again'),
        (_folder_with(exported, tmp_path / 'int8', precision='int8'),
         r'\(precision float32\), but detector.json describes .* \(precision int8\)'),
        (str(tmp_path / 'missing'), 'no such folder'),
        (str(tmp_path), 'cannot read detector.json'),
    ]
    for folder, message in cases:
        with pytest.raises(DeployError, match=message) as error:
            OnnxDetector(folder)
        assert '\n' not in str(error.value)
    damaged = _folder_with(exported, tmp_path / 'damaged')
    with open(os.path.join(damaged, 'detector.onnx'), 'r+b') as f:
        f.truncate(1000)
    with pytest.raises(DeployError, match='ONNX Runtime cannot load it .*; export the detector '
                       'again'):
        OnnxDetector(damaged)
    os.remove(os.path.join(damaged, 'detector.onnx'))
    with pytest.raises(DeployError, match='detector.onnx is missing'):
        OnnxDetector(damaged)
    with pytest.raises(DeployError, match="provider 'CUDAExecutionProvider' is not available.*"
                       'onnxruntime-gpu'):
        OnnxDetector(exported[0], providers=['CUDAExecutionProvider'])


def _detect(*args):
    code = 'import sys\nfrom mmregnet.cli import main\nsys.exit(main(sys.argv[1:]))\n'
    return _child(code, 'detect', *args)


def test_cli_detect_prints_writes_json_and_png_without_the_training_stack(exported, tmp_path):
    from mmregnet.deploy import OnnxDetector
    folder, points = exported
    cloud = tmp_path / 'cloud.bin'  # nuScenes layout: 5 values per point, the 5th unused
    np.column_stack([points, np.arange(len(points))]).astype(np.float32).tofile(cloud)
    out, png = tmp_path / 'dets.json', tmp_path / 'bev.png'
    proc = _detect(folder, str(cloud), '--dims', '5', '--use-dims', '4', '--out', str(out),
                   '--png', str(png))
    assert proc.returncode == 0, proc.stderr
    found = OnnxDetector(folder).detect(points)
    lines = proc.stdout.splitlines()
    assert lines[0].endswith(f'{len(points)} points, {len(found)} boxes')
    assert lines[1].split() == ['#', 'class', 'score', 'x', 'y', 'z', 'x_size', 'y_size',
                                'z_size', 'yaw', 'vx', 'vy']
    first = lines[2].split()
    assert first[1] == found.names[0] and float(first[2]) == round(float(found.scores[0]), 3)
    record = json.loads(out.read_text())
    assert record['count'] == len(found) and record['points'] == len(points)
    assert np.allclose([d['box'] for d in record['detections']], found.boxes)
    assert [d['name'] for d in record['detections']] == list(found.names)
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert sorted(os.listdir(tmp_path)) == ['bev.png', 'cloud.bin', 'dets.json']


def test_cli_detect_bad_input_is_one_line_and_exit_1(exported, tmp_path):
    folder, points = exported
    cloud = tmp_path / 'cloud.bin'
    points = points[:len(points) // 5 * 5 - 1]  # not a whole number of 5-value points
    points.tofile(cloud)
    nan = tmp_path / 'nan.bin'
    np.where(np.arange(len(points))[:, None] == 3, np.nan, points).astype(np.float32).tofile(nan)
    (tmp_path / 'taken.json').write_text('{}')
    cases = [
        ((folder, str(cloud), '--dims', '5'), r'cloud.bin: \d+ bytes is not a whole number of '
         r'points of 5 float32 values \(20 bytes each\); is --dims 5 right\?'),
        ((folder, str(cloud), '--use-dims', '3'), r'expected shape \(N, 4\)'),
        ((folder, str(cloud), '--use-dims', '6'), r'--use-dims must be in 3..4 \(--dims\), got 6'),
        ((folder, str(cloud), '--dims', '0'), r'--dims must be >= 3 .*, got 0'),  # 0 is no default
        ((folder, str(tmp_path / 'none.bin')), 'none.bin: no such file or directory'),
        ((folder, str(nan)), r'1 points hold NaN or inf \(rows \[3\]'),
        ((folder, str(cloud), '--out', str(tmp_path / 'taken.json')), 'exists; pass --force'),
        ((str(tmp_path), str(cloud)), 'cannot read detector.json'),
    ]
    for args, message in cases:
        proc = _detect(*args)
        assert proc.returncode == 1, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith('mmregnet detect: error: '), proc.stderr
        assert __import__('re').search(message, lines[0]), (message, lines[0])
    assert sorted(os.listdir(tmp_path)) == ['cloud.bin', 'nan.bin', 'taken.json']


def test_read_cloud_keeps_the_first_values_of_each_point(tmp_path):
    from mmregnet.deploy.report import read_cloud
    path = tmp_path / 'c.bin'
    np.arange(20, dtype=np.float32).tofile(path)
    assert read_cloud(str(path), 5, 4).tolist() == [[0, 1, 2, 3], [5, 6, 7, 8], [10, 11, 12, 13],
                                                    [15, 16, 17, 18]]
    assert read_cloud(str(path), 4).shape == (5, 4)
    assert glob.glob(str(tmp_path / '*')) == [str(path)]


def _node_example():
    """examples/node installed (once per package-lock) in a cache folder; its script path there."""
    import hashlib
    import tempfile
    if not (shutil.which('node') and shutil.which('npm')):
        pytest.skip('node and npm are not installed: the Node.js example cannot run')
    source = os.path.join(ROOT, 'examples', 'node')
    lock = open(os.path.join(source, 'package-lock.json'), 'rb').read()
    cache = os.path.join(os.environ.get('XDG_CACHE_HOME', os.path.expanduser('~/.cache')),
                         'mmregnet', 'node-example-' + hashlib.sha256(lock).hexdigest()[:16])
    if not os.path.isdir(os.path.join(cache, 'node_modules', 'onnxruntime-node')):
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        work = tempfile.mkdtemp(dir=os.path.dirname(cache), prefix='.node-example.')
        try:
            for name in ('package.json', 'package-lock.json'):
                shutil.copy(os.path.join(source, name), work)
            # --ignore-scripts: the install script fetches CUDA builds from outside npm;
            # the CPU build for linux-x64 ships in the package.
            subprocess.run(['npm', 'ci', '--ignore-scripts', '--no-audit', '--no-fund'],
                           cwd=work, check=True, capture_output=True, timeout=600)
            if not os.path.isdir(cache):
                os.replace(work, cache)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    shutil.copy(os.path.join(source, 'detect.mjs'), cache)  # resolves node_modules beside it
    return os.path.join(cache, 'detect.mjs')


def test_node_example_prints_the_python_runtimes_boxes(exported, tmp_path):
    from mmregnet.deploy import OnnxDetector
    script = _node_example()
    folder, points = exported
    cloud = tmp_path / 'cloud.bin'
    np.column_stack([points, np.zeros(len(points))]).astype(np.float32).tofile(cloud)
    run = [shutil.which('node'), script, folder, str(cloud), '--dims', '5', '--use-dims', '4']
    proc = subprocess.run(run + ['--json'], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    found = OnnxDetector(folder).detect(points)
    assert record['count'] == len(found) > 5
    assert [d['label'] for d in record['detections']] == found.labels.tolist()
    assert [d['name'] for d in record['detections']] == list(found.names)
    assert np.allclose([d['score'] for d in record['detections']], found.scores, rtol=1e-6)
    assert np.allclose([d['box'] for d in record['detections']], found.boxes, rtol=1e-6,
                       atol=1e-6)
    table = subprocess.run(run, capture_output=True, text=True, timeout=300)
    assert table.returncode == 0 and f'{len(found)} boxes' in table.stdout.splitlines()[0]
    bad = subprocess.run(run[:4] + ['--dims', '5', '--use-dims', '3'], capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 1 and bad.stderr == ('detect.mjs: error: the detector reads 4 '
                                                  'values per point, got --use-dims 3\n')
    short = subprocess.run(run[:4] + ['--dims', '3'], capture_output=True, text=True, timeout=300)
    assert short.returncode == 1 and short.stderr == ('detect.mjs: error: the detector reads 4 '
                                                      'values per point, got --dims 3\n')
