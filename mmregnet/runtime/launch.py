"""What ``tools/train.py`` and ``tools/test.py`` do: load a config, apply the
command line, build mmengine's Runner and run it.

Every runner saves checkpoints that weights-only ``torch.load`` accepts
(:mod:`mmregnet.runtime.portable_checkpoint`), whole or not at all
(:mod:`mmregnet.runtime.atomic_saves`), and every run goes through
:func:`mmregnet.compat.allow_mmengine_checkpoints`, so ``--resume`` and
``load_from`` also read checkpoints written without that hook (older ones,
or by mmengine alone) on torch >= 2.6, with weights-only loading on.
"""
import argparse
import contextlib
import importlib
import json
import logging
import numbers
import os
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.registry import RUNNERS, DefaultScope
from mmengine.runner import Runner, save_checkpoint
from mmengine.utils import import_modules_from_strings

from ..checkpoint.fit import check_checkpoint_fits
from ..compat import allow_mmengine_checkpoints
from ..errors import InputError
from ..fileio import atomic_output
from .atomic_saves import BACKEND as ATOMIC_BACKEND
from .atomic_saves import use_atomic_saves
from .checkpoints import find_resumable_checkpoint
from .distributed import prepare_cpu_distributed
from .portable_checkpoint import add_portable_hook
from .scope import config_scope

LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')
BACKENDS = ('pytorch', 'onnxruntime')


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Adds the options train and test share: work dir, overrides, launcher."""
    parser.add_argument('config', help='config file')
    parser.add_argument('--work-dir', help='folder for logs and checkpoints '
                        '(default: the config\'s work_dir or work_dirs/<config name>)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override config keys, e.g. train_cfg.max_epochs=2 '
                        'train_dataloader.batch_size=2')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none',
                        help='job launcher: none (one process) or pytorch (torchrun)')
    # torch.distributed.launch passes --local_rank / --local-rank; torchrun sets LOCAL_RANK.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def load_config(args: argparse.Namespace) -> Config:
    """The config of a run: the file, ``--cfg-options``, work dir and launcher.

    Args:
        args: Parsed command line (see :func:`add_common_args`).

    Returns:
        The config, ready for ``Runner.from_cfg``.
    """
    if not os.path.isfile(args.config):
        raise FileNotFoundError(f'config file {args.config} does not exist')
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options)
    if cfg.get('custom_imports'):
        # Config.fromfile imported the file's list; --cfg-options may have extended it.
        import_modules_from_strings(**cfg.custom_imports)
    cfg.default_scope = config_scope(cfg)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        name = os.path.splitext(os.path.basename(args.config))[0]
        cfg.work_dir = os.path.join('work_dirs', name)
    return cfg


def build_runner(cfg: Config):
    """mmengine's Runner (or the config's ``runner_type``) for ``cfg``.

    A ``pytorch``-launched run on a machine without CUDA gets the gloo
    backend and a CPU model wrapper (:func:`mmregnet.runtime.distributed.prepare_cpu_distributed`).
    Every runner writes checkpoints that load with weights-only ``torch.load``
    (:func:`mmregnet.runtime.portable_checkpoint.add_portable_hook`), whole
    or not at all (:func:`mmregnet.runtime.atomic_saves.use_atomic_saves`).
    """
    prepare_cpu_distributed(cfg)
    use_atomic_saves(cfg)
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    add_portable_hook(runner)
    return runner


def resolve_resume(cfg: Config, resume: Optional[str]) -> Optional[str]:
    """Sets ``cfg.resume``/``cfg.load_from`` for ``--resume [CHECKPOINT]``.

    Args:
        cfg: The run's config (its ``work_dir`` is searched).
        resume: None (no resume), ``'auto'`` (the newest complete checkpoint
            in the work dir, see :func:`find_resumable_checkpoint`) or a path.

    Returns:
        The checkpoint resumed from, or None (fresh start).
    """
    if resume is None:
        return None
    skipped: List[Tuple[str, str]] = []
    checkpoint = find_resumable_checkpoint(cfg.work_dir, skipped) if resume == 'auto' else resume
    for path, why in skipped:  # each newer checkpoint passed over, and why
        print_log(f'--resume: skipped {path}: {why}', logger='current', level=logging.WARNING)
    if resume != 'auto' and not os.path.isfile(resume):
        raise FileNotFoundError(f'--resume checkpoint {resume} does not exist')
    if checkpoint is not None:
        cfg.resume = True
        cfg.load_from = checkpoint
    return checkpoint


def check_loaded_weights(runner, checkpoint: Optional[str], allow_partial: bool = False,
                         allow_nonfinite: bool = False) -> None:
    """Refuses a ``load_from``/``--resume`` checkpoint that does not fit the runner's model.

    See :func:`mmregnet.checkpoint.fit.check_checkpoint_fits`; what the flags
    allowed is logged.
    """
    if checkpoint:
        for line in check_checkpoint_fits(runner.model, checkpoint, allow_partial,
                                          allow_nonfinite):
            print_log(line, logger='current', level=logging.WARNING)


def train(cfg: Config, allow_partial: bool = False, allow_nonfinite: bool = False) -> None:
    """Builds the runner and trains, allowing mmengine checkpoints to load.

    A ``load_from`` (or resumed) checkpoint that does not fit the model is
    refused unless ``allow_partial``; NaN/Inf weights unless ``allow_nonfinite``.
    """
    runner = build_runner(cfg)
    check_loaded_weights(runner, cfg.get('load_from'), allow_partial, allow_nonfinite)
    with allow_mmengine_checkpoints():
        runner.train()


def test(cfg: Config, checkpoint: str, out: Optional[str] = None,
         metrics_out: Optional[str] = None, backend: str = 'pytorch',
         providers: Optional[List[str]] = None, allow_partial: bool = False,
         allow_nonfinite: bool = False) -> Dict[str, float]:
    """Evaluates ``checkpoint`` with the config's test dataloader and evaluator.

    Args:
        cfg: The config.
        checkpoint: Weights to evaluate; with ``backend='onnxruntime'`` also a
            folder of ``tools/deployment/export_detector.py``.
        out: Optional ``.pkl`` path for the raw predictions (mmengine's
            DumpResults, written whole or not at all).
        metrics_out: Optional ``.json`` path for the metrics.
        backend: ``'pytorch'`` (the config's model) or ``'onnxruntime'`` (the
            detector exported to ONNX, see :mod:`mmregnet.deploy.evaluation`;
            a checkpoint file is exported into a temporary folder first).
        providers: ONNX Runtime providers for ``'onnxruntime'``.
        allow_partial: Evaluate a checkpoint that does not fit the model
            (refused by default, naming both archs).
        allow_nonfinite: Evaluate NaN or infinite weights.

    Returns:
        The metrics.
    """
    if backend not in BACKENDS:
        raise InputError(f'--backend must be one of {", ".join(BACKENDS)}, got {backend!r}')
    onnx = backend == 'onnxruntime'
    if not (os.path.isfile(checkpoint) or (onnx and os.path.isdir(checkpoint))):
        kind = 'checkpoint file or export folder' if onnx else 'checkpoint'
        raise FileNotFoundError(f'{kind} {checkpoint} does not exist')
    if onnx and cfg.get('launcher', 'none') != 'none':
        raise InputError('--backend onnxruntime evaluates in one process: use --launcher none '
                         f"(got {cfg.launcher})")
    cfg.load_from = checkpoint
    cfg.resume = False
    if out is not None:
        if not out.endswith(('.pkl', '.pickle')):
            raise InputError(f'--out must name a .pkl or .pickle file, got {out}')
        evaluators = cfg.test_evaluator
        evaluators = list(evaluators) if isinstance(evaluators, (list, tuple)) else [evaluators]
        cfg.test_evaluator = evaluators + [dict(type='mmregnet.AtomicDumpResults',
                                                out_file_path=out)]
    with contextlib.ExitStack() as stack:
        if onnx:
            from ..deploy.evaluation import onnx_test_config  # lazy: extras a 2D install lacks
            stack.enter_context(onnx_test_config(cfg, checkpoint, cfg.filename or 'config',
                                                 providers))
        runner = build_runner(cfg)
        if not onnx:
            check_loaded_weights(runner, checkpoint, allow_partial, allow_nonfinite)
        with allow_mmengine_checkpoints():
            metrics = runner.test()
    if metrics_out is not None and runner.rank == 0:
        os.makedirs(os.path.dirname(os.path.abspath(metrics_out)), exist_ok=True)
        with atomic_output(metrics_out, force=True) as tmp, open(tmp, 'w') as f:
            json.dump({k: float(v) for k, v in metrics.items() if isinstance(v, numbers.Real)}, f,
                      indent=1, sort_keys=True)
    return metrics


def save_untrained_checkpoint(config: str, path: str, seed: int = 0) -> None:
    """Saves the config's model with its initial (untrained) weights.

    The baseline a trained model is compared with: same network, random
    initialisation (``init_cfg`` as configured, so no pretrained weights
    unless the config loads them).

    Args:
        config: Config file.
        path: Output checkpoint path.
        seed: Seed of the initialisation.
    """
    cfg = Config.fromfile(config)
    scope = config_scope(cfg)
    registry = importlib.import_module(f'{scope}.registry').MODELS
    torch.manual_seed(seed)
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(cfg.model)
    model.init_weights()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_checkpoint({'meta': {'epoch': 0, 'iter': 0, 'seed': seed},
                     'state_dict': model.state_dict()}, path,
                    backend_args=dict(backend=ATOMIC_BACKEND))
