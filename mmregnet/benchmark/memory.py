"""Peak memory of one backbone forward or training step, each in a fresh process.

On the CPU the figure is the growth of the process's peak resident set over
its size just before the step (Linux ``/proc``), with glibc told to give
freed tensor memory back at once; a fresh process per measurement keeps one
run's memory from hiding another's. On CUDA it is ``torch.cuda.max_memory_allocated``
over the allocation before the step.
"""
import ctypes
import resource
from dataclasses import asdict
from typing import Callable, Dict, Optional

import torch

from .backbone import BackboneCase, build_ours, build_reference, training_step
from .isolate import in_fresh_process
from .timing import synchronize


def _status_kib(field: str) -> Optional[int]:
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Resets the kernel's peak-RSS mark of this process (Linux >= 4.0)."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def _mmap_large_blocks() -> None:
    """Makes glibc serve (and return) every block of 64 KiB or more with mmap.

    By default glibc raises that threshold as blocks are freed and then keeps
    freed tensor memory in its heap, so the resident size would track the
    heap's high-water mark rather than the live tensors.
    """
    try:
        ctypes.CDLL('libc.so.6').mallopt(-3, 64 * 1024)  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def cuda_peak(fn: Callable[[], object], device: str) -> Optional[int]:
    """Peak extra bytes of one call of ``fn`` on a CUDA device (None on the CPU)."""
    if not device.startswith('cuda'):
        return None
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def _measure(case: Dict, model_name: str, mode: str, with_cp: bool, device: str,
             channels_last: bool, threads: int) -> int:
    """Runs in the child: builds the model, runs one step, returns its peak bytes."""
    _mmap_large_blocks()
    if threads:
        torch.set_num_threads(threads)
    case = BackboneCase(**case)
    ours = build_ours(case, with_cp=with_cp)
    model = build_reference(ours, with_cp=with_cp) if model_name == 'reference' else ours
    if model_name == 'deploy':
        model = ours.switch_to_deploy()
    if model is None:
        raise ValueError(f'{case.arch} has no mmdet reference')
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=fmt)
    x = torch.randn(case.input_shape, device=device).contiguous(memory_format=fmt)
    if mode == 'train':
        # As in a detector, whose pillar encoder makes the pseudo image: the input needs
        # grad, so checkpointing also engages on the first block.
        x.requires_grad_(True)
        run = training_step(model, x)
    else:
        model.eval()

        def run() -> None:
            with torch.no_grad():
                model(x)
    if device.startswith('cuda'):
        return cuda_peak(run, device)
    reset = _reset_peak_rss()
    before = _status_kib('VmRSS')
    run()
    peak = _status_kib('VmHWM') if reset else None
    if peak is None:  # no /proc: ru_maxrss is the lifetime peak in KiB on Linux
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return 1024 * (peak - (before or 0))


def peak_memory(case: BackboneCase, model: str = 'ours', mode: str = 'train',
                with_cp: bool = False, device: str = 'cpu', channels_last: bool = False,
                threads: int = 0) -> int:
    """Peak extra memory of one step, measured in a fresh process.

    Args:
        case: The backbone and input shape.
        model: ``'ours'``, ``'reference'`` (mmdet's / mmdet3d's RegNet) or
            ``'deploy'`` (ours after ``switch_to_deploy``, inference only).
        mode: ``'train'`` (forward, backward, SGD update) or ``'infer'`` (no-grad forward).
        with_cp: Build the backbone with activation checkpointing.
        device: ``'cpu'`` or a CUDA device.
        channels_last: Run in channels-last memory format.
        threads: Torch threads in the child (0: its default).

    Returns:
        Bytes.

    Raises:
        ValueError: Bad arguments.
        RuntimeError: The child failed (its error is in the message).
    """
    if model not in ('ours', 'reference', 'deploy') or mode not in ('train', 'infer') or (
            model == 'deploy' and mode == 'train'):
        raise ValueError(f"model must be 'ours', 'reference' or (inference only) 'deploy' and "
                         f"mode 'train' or 'infer', got model={model!r}, mode={mode!r}")
    try:
        return in_fresh_process(_measure, asdict(case), model, mode, with_cp, device,
                                channels_last, threads)
    except RuntimeError as e:
        raise RuntimeError(f'measuring the peak memory of {model} {case} failed: {e}') from None
