"""`make demo`: generate a synthetic nuScenes-format dataset, train PointPillars-RegNetX-400MF-FPN
on it, evaluate the trained and an untrained model with the nuScenes devkit metric, and draw a
bird's-eye view of predictions against ground truth.

    python tools/demo.py [--work-dir work_dirs/demo] [--epochs N] ...

Everything lands under the work dir: train/ (logs, checkpoints), metrics_{trained,untrained}.json,
predictions_trained.pkl, bev_predictions.png and summary.json. Rerunning continues an
interrupted training (tools/train.py --resume) and reuses an identical dataset.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from typing import Dict, List

from mmregnet.warning_filters import hide_third_party_warnings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(
    REPO, 'configs/regnet/pointpillars_hv_regnet-400mf_fpn_sbn-all_1xb4-demo_nus-3d.py')
METRIC = 'NuScenes metric/pred_instances_3d_NuScenes/'


def parse_args(argv=None) -> argparse.Namespace:
    """The command line (``argv`` or ``sys.argv``)."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--config', default=DEFAULT_CONFIG)
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--data-root', help="dataset folder (default: the config's data_root)")
    parser.add_argument('--epochs', type=int, help="training epochs (default: the config's)")
    parser.add_argument('--train-scenes', type=int, default=8)
    parser.add_argument('--val-scenes', type=int, default=2)
    parser.add_argument('--samples-per-scene', type=int, default=30)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='extra KEY=VALUE overrides for training and testing')
    return parser.parse_args(argv)


def step(title: str, start: float) -> None:
    """Prints a step header with the seconds since ``start``."""
    print(f'\n=== [{time.time() - start:6.0f} s] {title}', flush=True)


def run(command: List[str]) -> None:
    """Runs a tool with its output streaming to this console."""
    print('$ ' + ' '.join(command), flush=True)
    subprocess.run(command, check=True, cwd=os.getcwd())


def headline(metrics_file: str) -> Dict[str, float]:
    """mAP and NDS from a tools/test.py --metrics-out file."""
    with open(metrics_file) as f:
        metrics = json.load(f)
    return {'mAP': metrics[METRIC + 'mAP'], 'NDS': metrics[METRIC + 'NDS']}


def config_overrides(data_root: str, epochs, extra: List[str]) -> List[str]:
    """--cfg-options that point the config at ``data_root`` and set the epochs."""
    overrides = [f'data_root={data_root}',
                 f'train_dataloader.dataset.data_root={data_root}',
                 f'test_dataloader.dataset.data_root={data_root}',
                 f'test_evaluator.data_root={data_root}',
                 f'test_evaluator.ann_file={os.path.join(data_root, "nuscenes_infos_val.pkl")}']
    if epochs is not None:
        overrides += [f'train_cfg.max_epochs={epochs}', f'param_scheduler.1.T_max={epochs}',
                      f'param_scheduler.1.end={epochs}']
    return overrides + list(extra)


def evaluate(args: argparse.Namespace, name: str, checkpoint: str, overrides: List[str],
             start: float) -> Dict[str, float]:
    """Runs tools/test.py on one checkpoint; returns its mAP and NDS."""
    step(f'4/5 evaluating the {name} model (nuScenes devkit metric on mini_val)', start)
    metrics = os.path.join(args.work_dir, f'metrics_{name}.json')
    command = [sys.executable, os.path.join(REPO, 'tools', 'test.py'), args.config, checkpoint,
               '--work-dir', os.path.join(args.work_dir, f'test_{name}'), '--metrics-out', metrics]
    if name == 'trained':
        command += ['--out', os.path.join(args.work_dir, 'predictions_trained.pkl')]
    run(command + ['--cfg-options', *overrides])
    return headline(metrics)


def main(argv=None) -> int:
    """Runs the demo's five steps; returns the exit status."""
    args = parse_args(argv)
    hide_third_party_warnings(argv)
    start = time.time()
    # Before torch loads OpenMP (here and in the tools, which inherit it): threads that sleep
    # instead of spinning while they wait. Measured on 2 cores, a backbone training step with
    # spinning threads took 21 s instead of 0.9 s while another process was busy; on idle
    # cores sleeping threads cost about 12% (0.18 s instead of 0.16 s).
    os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
    from mmengine.config import Config

    from mmregnet.fileio import write_bytes
    from mmregnet.runtime import find_resumable_checkpoint
    from mmregnet.runtime.launch import save_untrained_checkpoint
    from mmregnet.synthetic import DatasetSpec, Options, generate
    from mmregnet.bev_pictures import save_bev_figure
    from mmregnet.visualization import load_bev_samples

    cfg = Config.fromfile(args.config)
    data_root, work = args.data_root or cfg.data_root, args.work_dir
    limit = max(abs(v) for v in cfg.point_cloud_range[:2] + cfg.point_cloud_range[3:5])
    overrides = config_overrides(data_root, args.epochs, args.cfg_options)

    step(f'1/5 synthetic nuScenes-format dataset in {data_root}', start)
    # The generator annotates what the detector sees: objects inside the point-cloud range.
    spec = DatasetSpec('nuscenes', Options(
        samples_per_scene=args.samples_per_scene, sweeps_per_sample=cfg.sweeps,
        annotation_range=limit, seed=args.seed, azimuth_steps=720, max_range=40.0),
        dict(train=args.train_scenes, val=args.val_scenes), max_sweeps=cfg.sweeps)
    print('generated' if generate(spec, data_root) else 'reusing the identical dataset', flush=True)

    step('2/5 training (tools/train.py --resume: continues an interrupted run)', start)
    train_dir = os.path.join(work, 'train')
    run([sys.executable, os.path.join(REPO, 'tools', 'train.py'), args.config, '--work-dir',
         train_dir, '--resume', '--cfg-options', *overrides])
    trained = find_resumable_checkpoint(train_dir)
    if trained is None:
        raise RuntimeError(f'training left no complete checkpoint in {train_dir}')

    step('3/5 untrained model (same config, random initialisation)', start)
    untrained = os.path.join(work, 'untrained.pth')
    save_untrained_checkpoint(args.config, untrained, seed=args.seed)
    results = {name: evaluate(args, name, checkpoint, overrides, start)
               for name, checkpoint in (('trained', trained), ('untrained', untrained))}

    step('5/5 bird\'s-eye view of predictions against ground truth', start)
    picture = os.path.join(work, 'bev_predictions.png')
    samples = load_bev_samples(os.path.join(data_root, 'nuscenes_infos_val.pkl'),
                               os.path.join(work, 'predictions_trained.pkl'),
                               os.path.join(data_root, 'samples', 'LIDAR_TOP'))
    save_bev_figure(samples, picture, limit)

    summary = dict(results, checkpoint=trained, picture=picture,
                   wall_time_s=round(time.time() - start, 1))
    write_bytes(os.path.join(work, 'summary.json'),
                (json.dumps(summary, indent=1) + '\n').encode(), force=True)
    print(f'\n=== done in {summary["wall_time_s"]:.0f} s')
    for name in ('trained', 'untrained'):
        print(f'{name:>10}: mAP {results[name]["mAP"]:.4f}  NDS {results[name]["NDS"]:.4f}')
    print(f'checkpoint {trained}\npicture    {picture}\nsummary    {work}/summary.json')
    return 0


if __name__ == '__main__':
    sys.exit(main())
