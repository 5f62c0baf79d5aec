"""``tools/analysis_tools/benchmark.py`` and ``benchmarks/run_benchmarks.py`` end to end.

Small inputs and one timed round: these check that every contender runs, agrees
with the reference, and lands in the JSON and the tables. They time nothing.
"""
import contextlib
import importlib.util
import json
import os
import time

import pytest
import torch

pytestmark = pytest.mark.slow  # the benchmark tools end to end

ROOT = os.path.join(os.path.dirname(__file__), '..')
DEMO_NUS = os.path.join(ROOT, 'configs', 'regnet',
                        'pointpillars_hv_regnet-400mf_fpn_sbn-all_1xb4-demo_nus-3d.py')
NUS_400MF = os.path.join(ROOT, 'configs', 'regnet',
                         'pointpillars_hv_regnet-400mf_fpn_sbn-all_8xb4-2x_nus-3d.py')


def _load(relpath):
    spec = importlib.util.spec_from_file_location(os.path.basename(relpath)[:-3],
                                                  os.path.join(ROOT, relpath))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def tool():
    return _load('tools/analysis_tools/benchmark.py')


def _check_race(stats, names):
    assert set(stats) == set(names) | {'(matmul)'}
    assert stats['reference']['speedup'] == 1.0
    for name in names:
        assert stats[name]['reps'] == 1 and stats[name]['median_ms'] > 0, name
    assert stats['(matmul)']['macs_per_s'] > 0


def test_backbone_race_writes_every_contender(tool, tmp_path, capsys):
    out = tmp_path / 'bb.json'
    tool.main(['backbone', 'regnetx_400mf', '--no-stem', '--input', '1', '16', '48', '48',
               '--reps', '1', '--warmup', '0', '--jit', '--train', '--json', str(out)])
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    inference = result['inference']
    _check_race(inference, ['reference', 'eval', 'deploy', 'onnxruntime'])
    # The traced model races apart, after the main race, against the same weights.
    compiled = result['inference_compiled']
    _check_race(compiled, ['reference', 'deploy', 'onnxruntime', 'deploy+jit'])
    for stats, name in ((inference, 'eval'), (inference, 'deploy'), (inference, 'onnxruntime'),
                        (compiled, 'deploy+jit')):
        assert stats[name]['rel_error'] < 1e-4, name
        assert 0 < stats[name]['mac_fraction'], name
    _check_race(result['train'], ['reference', 'train', 'train+channels_last'])
    assert result['machine']['torch_threads'] >= 1
    assert '### inference_compiled' in printed and '| deploy+jit |' in printed
    assert '### train' in printed


def test_traced_model_is_built_only_after_the_main_race(monkeypatch):
    # Running the frozen TorchScript model changes the reference's page faults,
    # so it must not exist before the race whose figures the README quotes.
    from mmregnet.benchmark import runs
    from mmregnet.benchmark.backbone import BackboneCase
    log = []
    real_race, real_compiled = runs.race, runs.compiled_contenders

    def race(fns, *args, **kwargs):
        log.append(('race', tuple(sorted(fns))))
        return real_race(fns, *args, **kwargs)

    def compiled(*args, **kwargs):
        log.append(('build', ()))
        return real_compiled(*args, **kwargs)

    monkeypatch.setattr(runs, 'race', race)
    monkeypatch.setattr(runs, 'compiled_contenders', compiled)
    runs.run_backbone(BackboneCase('regnetx_200mf', (1, 8, 32, 32), with_stem=False),
                      reps=1, warmup=0, jit=True)
    assert log == [('race', ('deploy', 'eval', 'onnxruntime', 'reference')), ('build', ()),
                   ('race', ('deploy', 'deploy+jit', 'onnxruntime', 'reference'))]


def test_child_of_a_killed_benchmark_ends_too():
    psutil = pytest.importorskip('psutil')
    import subprocess
    import sys
    code = ('import time; from mmregnet.benchmark.isolate import in_fresh_process; '
            'in_fresh_process(time.sleep, 120)')
    parent = subprocess.Popen([sys.executable, '-c', code], cwd=ROOT)
    children = []
    try:
        deadline = time.monotonic() + 120
        while not children and time.monotonic() < deadline:
            time.sleep(0.5)
            children = [p for p in psutil.Process(parent.pid).children()
                        if 'spawn_main' in ' '.join(p.cmdline())]
        assert children, 'the child process never started'
        parent.kill()
        parent.wait()
        _, alive = psutil.wait_procs(children, timeout=10)
        # An exited child that no init process reaps stays a zombie: it has ended.
        zombie = psutil.STATUS_ZOMBIE
        alive = [p for p in alive if p.is_running() and p.status() != zombie]
        assert not alive, 'the child outlived its killed parent'
    finally:
        parent.kill()
        for p in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()


def test_detector_race_covers_points_to_boxes_stages_and_backbone(tool, tmp_path, capsys):
    out, md = tmp_path / 'det.json', tmp_path / 'det.md'
    tool.main(['detector', DEMO_NUS, '--num-points', '3000', '--boxes', '40', '--reps', '1',
               '--warmup', '0', '--no-compile', '--json', str(out), '--markdown', str(md)])
    result = json.loads(out.read_text())
    contenders = ['reference', 'deploy', 'onnxruntime']
    _check_race(result['detector'], contenders + ['onnxruntime-int8'])
    _check_race(result['backbone_only'], contenders)
    for name in contenders:  # mmdet3d eager's boxes, scores and labels
        assert result['detector'][name]['rel_error'] < 1e-4, name
    assert result['num_points'] == 3000 and result['backbone']['arch'] == 'regnetx_400mf'
    assert 0 < result['boxes_to_nms'] <= 100  # the demo's nms_pre caps it
    assert list(result['stages']) == ['voxelize', 'encoder+scatter', 'backbone', 'neck', 'head',
                                      'decode+NMS']
    assert all(ms['reference'] > 0 and ms['onnxruntime'] > 0 for ms in result['stages'].values())
    assert result['nms']['reference'] > 0 and result['nms']['onnxruntime'] > 0
    cold = result['cold_start']  # in fresh interpreters that import mmregnet.deploy only
    assert cold['runs'] == 3 and cold['loads_torch'] is False
    assert 0 < cold['import_s'] < cold['total_s'] and cold['first_frame_s'] > 0
    printed = capsys.readouterr().out
    assert 'stages, median ms' in printed and '| onnxruntime |' in printed
    assert '| NMS alone (in decode+NMS) |' in printed
    assert 'Cold start of the ONNX Runtime detector' in printed and 'torch not loaded' in printed
    assert '| onnxruntime-int8 |' in printed  # int8 boxes differ: an error, or 'other boxes'
    assert md.read_text() in printed
    # The README row of benchmarks/run_benchmarks.py is built from this result.
    runner = _load('benchmarks/run_benchmarks.py')
    row = runner.readme_row(result)
    assert set(row) == {key for key, _ in runner.README_COLUMNS}
    assert row['config'] == os.path.basename(DEMO_NUS)[:-3] and row['compile'] is None
    assert row['speedup'] == f"{result['detector']['onnxruntime']['speedup']:.2f}x"


def test_calibrated_head_sends_the_asked_number_of_boxes_to_nms():
    from mmregnet.benchmark.detector import (calibrate_boxes, detector_inputs, detector_pair,
                                             lidar_frame)
    from mmregnet.benchmark.detector_race import boxes_to_nms
    from mmregnet.deploy.configs import load_detector_config
    from detector_inputs import shrink_range
    cfg = shrink_range(load_detector_config(NUS_400MF, {'model.test_cfg.pts.nms_pre': 100000}),
                       grid=64)
    ours, _ = detector_pair(cfg)
    points = lidar_frame(cfg, 8000)
    assert points.shape == (8000, 4)
    # Ray-cast, not uniform: most returns come from near the sensor.
    assert (points[:, :2].norm(dim=1) < 20).float().mean() > 0.5
    data = detector_inputs([points])
    assert boxes_to_nms(ours, data) == 0  # an untrained head scores every anchor ~0.01
    calibrate_boxes(ours, data, boxes=300)
    assert boxes_to_nms(ours, data) == 300


def test_error_check_turns_tf32_off_and_restores_the_flags():
    from mmregnet.benchmark.runs import exact_float32
    flags = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    try:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
        with pytest.raises(RuntimeError, match='inside'):
            with exact_float32():
                assert not torch.backends.cudnn.allow_tf32
                assert not torch.backends.cuda.matmul.allow_tf32
                raise RuntimeError('inside')
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags


def test_detector_weights_are_seeded_and_leave_the_callers_random_state_alone():
    from mmregnet.benchmark.detector import detector_pair
    from mmregnet.deploy.configs import load_detector_config
    cfg = load_detector_config(DEMO_NUS)
    state = torch.random.get_rng_state()
    first = detector_pair(cfg)[0].state_dict()
    assert torch.equal(torch.random.get_rng_state(), state)
    again = detector_pair(cfg)[0].state_dict()
    other = detector_pair(cfg, seed=1)[0].state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


@pytest.mark.parametrize('argv, message', [
    (['backbone', 'regnetx_400mf', '--reps', '0'], '--reps must be >= 1'),
    (['backbone', 'regnetx_401mf'], 'regnetx_401mf'),
    (['backbone', 'regnetx_400mf', '--input', '1', '3', '0', '8'], 'input_shape must be 4'),
    (['backbone', 'regnetx_400mf', '--device', 'tpu'], "--device must be 'cpu'"),
    (['detector', 'no/such/config.py'], 'config no/such/config.py: no such file'),
    (['detector', DEMO_NUS, '--points', 'missing.bin'], '--points missing.bin: no such file'),
    (['detector', DEMO_NUS, '--warmup', '0'], 'torch.compile compiles in the first round'),
    (['detector', DEMO_NUS, '--boxes', '0'], '--num-points and --boxes must be >= 1'),
])
def test_bad_arguments_name_what_was_expected(tool, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        tool.parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_with_cp_command_measures_less_training_memory(tool, tmp_path, capsys):
    out = tmp_path / 'cp.json'
    tool.main(['with-cp', 'regnetx_400mf', '--no-stem', '--input', '2', '64', '128', '128',
               '--json', str(out)])
    result = json.loads(out.read_text())
    # Checkpointing drops most activations of a training step (44-63% at 96-160 px).
    assert 0 < result['with_cp_bytes'] < 0.7 * result['plain_bytes']
    assert result['reduction'] == pytest.approx(1 - result['with_cp_bytes']
                                                / result['plain_bytes'])
    assert 'with_cp' in capsys.readouterr().out


def test_peak_memory_follows_the_batch():
    from mmregnet.benchmark import BackboneCase
    from mmregnet.benchmark.memory import peak_memory
    peaks = [peak_memory(BackboneCase('regnetx_400mf', (n, 64, 128, 128), with_stem=False),
                         model='reference', mode='infer') for n in (1, 4)]
    # Three more images hold at least three more images' worth of stage-1 maps
    # (here 33 MiB more; a fixed part, such as reordered weights, does not grow).
    image_bytes = 64 * 128 * 128 * 4
    assert 0 < peaks[0] and peaks[1] - peaks[0] > 3 * image_bytes
