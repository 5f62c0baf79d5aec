"""Bad input to the detector export and runtime: one clear error, nothing half-written.

Uses the demo nuScenes config (a 64 x 64 canvas, a 64-channel head): exports
take seconds.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

pytestmark = pytest.mark.slow  # exports a detector to refuse bad input to

pytest.importorskip('onnxruntime')

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
CONFIGS = os.path.join(ROOT, 'configs', 'regnet')
DEMO_NUS = os.path.join(CONFIGS, 'pointpillars_hv_regnet-400mf_fpn_sbn-all_1xb4-demo_nus-3d.py')
EXPORT = os.path.join(ROOT, 'tools', 'deployment', 'export_detector.py')


def _checkpoint(path, arch='regnetx_400mf', **cfg_options):
    """An mmengine-style checkpoint of the demo detector (a HistoryBuffer in its message hub)."""
    from mmengine.logging import HistoryBuffer

    from mmregnet.deploy.configs import build_detector, load_detector_config
    from mmregnet.detection import stage_channels
    options = dict(cfg_options)
    if arch != 'regnetx_400mf':
        options.update({'model.pts_backbone.arch': arch,
                        'model.pts_neck.in_channels': stage_channels(arch, (1, 2, 3))})
    torch.manual_seed(0)
    model = build_detector(load_detector_config(DEMO_NUS, options))
    torch.save({'meta': {'epoch': 1}, 'state_dict': model.state_dict(),
                'message_hub': {'log_scalars': {'loss': HistoryBuffer([1.0], [1])}}}, path)
    return str(path)


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    from mmregnet.deploy import export_detector
    work = tmp_path_factory.mktemp('export')
    checkpoint = _checkpoint(work / 'nus.pth')
    export_detector(DEMO_NUS, checkpoint, str(work / 'nus'))
    return work, checkpoint


def _run(*args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, EXPORT, *args], capture_output=True, text=True,
                          env=env, cwd=ROOT)


def test_cli_exports_and_refuses_an_existing_folder(exported, tmp_path):
    work, checkpoint = exported
    out = tmp_path / 'cli'
    ok = _run(DEMO_NUS, checkpoint, '--out', str(out), '--check', '2000')
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert 'check: 2000 points ->' in ok.stdout
    assert sorted(os.listdir(out)) == ['detector.json', 'detector.onnx']
    again = _run(DEMO_NUS, checkpoint, '--out', str(out))
    assert again.returncode == 1
    assert again.stderr.strip().splitlines()[-1].endswith('exists; pass --force to replace it')


def test_checkpoint_of_another_arch_is_refused_naming_both(exported, tmp_path):
    other = _checkpoint(tmp_path / '800mf.pth', arch='regnetx_800mf')
    out = tmp_path / 'out'
    result = _run(DEMO_NUS, other, '--out', str(out))
    assert result.returncode == 1
    # One line from the tool (the stack's own deprecation warnings may come before it).
    lines = [line for line in result.stderr.splitlines() if line.startswith('export_detector')]
    assert len(lines) == 1 and result.stderr.strip().endswith(lines[0]), result.stderr
    assert 'its pts_backbone is regnetx_800mf, but the config builds regnetx_400mf' in lines[0]
    assert not out.exists() and os.listdir(tmp_path) == ['800mf.pth']


def test_checkpoint_of_another_head_and_missing_files_are_named(exported, tmp_path):
    from mmregnet.deploy import DeployError, export_detector
    from mmregnet.errors import InputError
    work, _ = exported
    fewer = _checkpoint(tmp_path / 'head.pth', **{'model.pts_bbox_head.num_classes': 3})
    with pytest.raises(DeployError, match=r'does not fit config .*differ in shape '
                       r"\(e\.g\. 'pts_bbox_head\.conv_cls\.weight'"):
        export_detector(DEMO_NUS, fewer, str(tmp_path / 'a'))
    with pytest.raises(InputError, match="checkpoint 'nope.pth' does not exist"):
        export_detector(DEMO_NUS, 'nope.pth', str(tmp_path / 'b'))
    junk = tmp_path / 'junk.pth'
    junk.write_bytes(b'not a checkpoint')
    with pytest.raises(InputError, match='junk.pth'):
        export_detector(DEMO_NUS, str(junk), str(tmp_path / 'c'))
    assert sorted(os.listdir(tmp_path)) == ['head.pth', 'junk.pth']


def test_graph_of_another_config_is_refused(exported, tmp_path):
    from mmregnet.deploy import DeployError, OnnxDetector, export_detector
    from mmregnet.deploy.configs import load_detector_config
    from mmregnet.deploy.evaluation import onnx_test_config
    work, _ = exported
    options = {'model.pts_neck.out_channels': 32, 'model.pts_bbox_head.in_channels': 32,
               'model.pts_bbox_head.feat_channels': 32}
    narrow = _checkpoint(tmp_path / 'narrow.pth', **options)
    export_detector(DEMO_NUS, narrow, str(tmp_path / 'narrow'), cfg_options=options)
    mixed = tmp_path / 'mixed'
    shutil.copytree(work / 'nus', mixed)
    shutil.copy(tmp_path / 'narrow' / 'detector.onnx', mixed / 'detector.onnx')
    with pytest.raises(DeployError, match=r'detector.onnx was exported from config .*network '
                       r'[0-9a-f]{16}\), but detector.json describes .*; export the detector '
                       'again'):
        OnnxDetector(str(mixed))
    # tools/test.py CONFIG DIR: the folder must hold the config's network.
    cfg = load_detector_config(DEMO_NUS)
    with pytest.raises(DeployError, match='holds the graph of .* not of config'):
        with onnx_test_config(cfg, str(tmp_path / 'narrow'), DEMO_NUS):
            pass
    with pytest.raises(DeployError, match='no such folder'):
        OnnxDetector(str(tmp_path / 'missing'))
    with pytest.raises(DeployError, match='cannot read detector.json'):
        OnnxDetector(str(tmp_path))
    # A folder of the earlier format (the network alone, decoded in PyTorch) is refused
    # with what to do.
    old = tmp_path / 'old'
    shutil.copytree(work / 'nus', old)
    manifest = json.loads((old / 'detector.json').read_text())
    (old / 'detector.json').write_text(json.dumps(dict(manifest, version=2)))
    with pytest.raises(DeployError, match=r"expected format 'mmregnet-onnx-detector' version 3, "
                       r"got 'mmregnet-onnx-detector' version 2; export the detector again"):
        OnnxDetector(str(old))


def test_interrupted_export_leaves_nothing(exported, tmp_path):
    _, checkpoint = exported
    out = tmp_path / 'out'
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, EXPORT, DEMO_NUS, checkpoint, '--out', str(out)],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 240
    while not any(p.endswith('.part') for p in os.listdir(tmp_path)):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, 'the export never started writing'
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert 'interrupted' in err
    assert os.listdir(tmp_path) == []


def test_a_model_off_the_cpu_is_refused_before_tracing(tmp_path):
    from mmregnet.deploy import DeployError
    from mmregnet.deploy.configs import build_detector, load_detector_config
    from mmregnet.deploy.export import export_model
    cfg = load_detector_config(DEMO_NUS)
    model = build_detector(cfg).to('meta')  # a device other than the CPU, as cuda would be
    with pytest.raises(DeployError, match=r'on the CPU; the model is on meta: export '
                                          r'model\.cpu\(\)'):
        export_model(model, cfg, str(tmp_path / 'out'))
    assert not os.path.exists(tmp_path / 'out')
