"""The backbone measurements behind ``tools/analysis_tools/benchmark.py``: JSON-able dicts."""
import contextlib
import tempfile
from typing import Callable, Dict, Iterator, Optional

import torch

from ..arch import get_arch
from .backbone import (BackboneCase, compiled_contenders, inference_contenders, relative_error,
                       training_contenders, training_step)
from .memory import cuda_peak, peak_memory
from .timing import num_threads, summarize, time_interleaved

MATMUL_SIZE = 1024


@contextlib.contextmanager
def exact_float32() -> Iterator[None]:
    """TF32 off for CUDA convs and matmuls inside, restored after.

    PyTorch lets cuDNN round float32 conv inputs to TF32 (a 10-bit mantissa),
    which alone puts two equal models 1e-3 apart: the error check measures
    the deploy transform with it off (timings keep the default).
    """
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def race(fns: Dict[str, Callable[[], object]], items: int, reps: int, warmup: int,
         device: str, flops: Optional[int] = None) -> Dict[str, Dict]:
    """Times ``fns`` (one named ``reference``) interleaved with a square matmul that gauges
    the machine in the same run; adds each one's ``speedup`` over the reference."""
    a, b = (torch.randn(MATMUL_SIZE, MATMUL_SIZE, device=device) for _ in range(2))
    times = time_interleaved(dict(fns, **{'(matmul)': lambda: torch.mm(a, b)}), reps, warmup,
                             device)
    mm = summarize(times.pop('(matmul)'))
    mm_rate = MATMUL_SIZE ** 3 / (mm['median_ms'] / 1e3)
    out = {name: summarize(t, items) for name, t in times.items()}
    ref = out['reference']['median_ms']
    for stats in out.values():
        stats['speedup'] = ref / stats['median_ms']
        if flops:
            stats['macs_per_s'] = flops / (stats['median_ms'] / 1e3)
            stats['mac_fraction'] = stats['macs_per_s'] / mm_rate
    out['(matmul)'] = dict(mm, macs_per_s=mm_rate, size=MATMUL_SIZE)
    return out


def _inference_race(models: Dict[str, torch.nn.Module], x: torch.Tensor, reps: int,
                    warmup: int, device: str, amp: bool, flops: int) -> Dict[str, Dict]:
    """Races eval-mode ``models`` (one named ``reference``) on ``x``, with their errors."""
    with torch.autocast(device.split(':')[0], enabled=amp):  # float16 on CUDA, bfloat16 on CPUs
        with exact_float32():
            expected = models['reference'](x)
            errors = {name: relative_error(expected, m(x)) for name, m in models.items()}
        fns = {name: (lambda m=m: m(x)) for name, m in models.items()}
        stats = race(fns, x.shape[0], reps, warmup, device, flops)
        for name, fn in fns.items():
            stats[name]['rel_error'] = errors[name]
            stats[name]['peak_bytes'] = cuda_peak(fn, device)
    return stats


def run_backbone(case: BackboneCase, device: str = 'cpu', reps: int = 10, warmup: int = 2,
                 amp: bool = False, jit: bool = False, compile: bool = False,
                 train: bool = False, memory: bool = False, threads: int = 0,
                 onnx: bool = True) -> Dict:
    """Races mmdet's RegNet against ours (eval, deploy, ONNX Runtime) on one backbone case.

    The traced and compiled models are built only after that race and raced
    apart, against the reference, deploy and ONNX Runtime again
    (``inference_compiled``):
    running the frozen TorchScript model changes how glibc serves the
    reference's large tensors afterwards (fewer page faults): on the 2-core
    CPU, stem-less regnetx_400mf on 1x64x400x400, the reference took 495 ms
    after it against 583-603 ms without. So asking for them does not change
    the main race's figures.

    Args:
        case: Arch, input shape, stem or not.
        device: ``'cpu'`` or ``'cuda'``.
        reps: Timed rounds.
        warmup: Untimed rounds first.
        amp: Run under autocast.
        jit: Also time the deploy model traced and frozen.
        compile: Also time mmdet's model under ``torch.compile``.
        train: Also race training steps (reference, ours, ours channels-last).
        memory: Also measure peak memory of each inference and training step
            (fresh processes, CPU: resident-set growth).
        threads: Torch threads (0: the default).
        onnx: Race the deployed model exported to ONNX Runtime too.

    Returns:
        ``{'case', 'flops', 'params', 'inference': {name: stats}, 'train': {...}}``
        and, with ``jit`` or ``compile``, ``'inference_compiled'``; stats hold
        latency percentiles, ``fps``, ``speedup`` over the reference of the same
        race and ``mac_fraction`` (achieved multiply-adds/s over the matmul rate).
    """
    result = dict(case=dict(arch=case.arch, input_shape=list(case.input_shape),
                            with_stem=case.with_stem), device=device, amp=amp,
                  flops=case.flops(), params=case.params())
    with num_threads(threads), torch.no_grad():
        result['threads'] = torch.get_num_threads()
        with tempfile.TemporaryDirectory() as onnx_dir:
            models = inference_contenders(case, device, onnx_dir if onnx else None)
        x = torch.randn(case.input_shape, device=device)
        result['inference'] = _inference_race(models, x, reps, warmup, device, amp,
                                              result['flops'])
        if jit or compile:
            extra = compiled_contenders(models, x, jit=jit, compile=compile)
            peers = {k: models[k] for k in ('reference', 'deploy', 'onnxruntime') if k in models}
            result['inference_compiled'] = _inference_race(
                dict(peers, **extra), x, reps, warmup, device, amp, result['flops'])
    if train:
        with num_threads(threads), torch.autocast(device.split(':')[0], enabled=amp):
            steps = {}
            for name, (model, fmt) in training_contenders(case, device).items():
                steps[name] = training_step(model, torch.randn(case.input_shape, device=device)
                                            .contiguous(memory_format=fmt))
            result['train'] = race(steps, case.input_shape[0], reps, warmup, device)
            for name, fn in steps.items():
                result['train'][name]['peak_bytes'] = cuda_peak(fn, device)
    if memory and device == 'cpu':
        # RegNetY has no mmdet reference: its reference row is our own eval model.
        ref = dict(model='ours' if get_arch(case.arch).se_ratio else 'reference')
        for name, kw in dict(reference=ref, eval={}, deploy=dict(model='deploy')).items():
            result['inference'][name]['peak_bytes'] = peak_memory(case, mode='infer',
                                                                  threads=threads, **kw)
        for name, kw in dict(reference=ref, train={},
                             **{'train+channels_last': dict(channels_last=True)}).items():
            if 'train' in result:
                result['train'][name]['peak_bytes'] = peak_memory(case, threads=threads, **kw)
    return result


def run_with_cp_memory(case: BackboneCase, device: str = 'cpu', threads: int = 0) -> Dict:
    """Peak memory of one training step of ours without and with ``with_cp``.

    Args:
        case: Backbone and batch (the standard one: regnetx_1.6gf, 2x64x400x400, no stem).
        device: ``'cpu'`` or ``'cuda'``.
        threads: Torch threads in the measuring processes.

    Returns:
        ``{'plain_bytes', 'with_cp_bytes', 'reduction'}`` (reduction as a fraction).
    """
    plain = peak_memory(case, device=device, threads=threads)
    cp = peak_memory(case, with_cp=True, device=device, threads=threads)
    return dict(case=dict(arch=case.arch, input_shape=list(case.input_shape),
                          with_stem=case.with_stem), device=device,
                plain_bytes=plain, with_cp_bytes=cp, reduction=1 - cp / plain)
