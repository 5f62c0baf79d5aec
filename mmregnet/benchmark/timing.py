"""Side-by-side timing: interleaved repeats and latency percentiles.

Timing the contenders in turn, in one process and with a rotating start,
spreads the noise of a shared machine (other jobs, frequency changes) over
all of them instead of penalising whichever ran during a busy spell.
"""
import contextlib
import statistics
import time
from typing import Callable, Dict, Iterator, List, Mapping, Sequence

import numpy as np
import torch


def synchronize(device: str) -> None:
    """Waits for queued GPU work (a no-op on the CPU).

    Args:
        device: ``'cpu'`` or a CUDA device string.
    """
    if device.startswith('cuda'):
        torch.cuda.synchronize(device)


def time_interleaved(fns: Mapping[str, Callable[[], object]], reps: int, warmup: int = 2,
                     device: str = 'cpu') -> Dict[str, List[float]]:
    """Seconds per call of each function, measured in interleaved rounds.

    Args:
        fns: Name to a no-argument callable (one forward, one training step...).
        reps: Timed rounds; each calls every function once.
        warmup: Untimed rounds first (allocator, oneDNN kernel caches, autotuning).
        device: Where the work runs, to synchronise before reading the clock.

    Returns:
        Name to its ``reps`` durations in seconds, in order.

    Raises:
        ValueError: If ``fns`` is empty or ``reps < 1`` or ``warmup < 0``.
    """
    if not fns or reps < 1 or warmup < 0:
        raise ValueError(f'need at least one function, reps >= 1 and warmup >= 0; got '
                         f'{len(fns)} functions, reps={reps}, warmup={warmup}')
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    synchronize(device)
    times: Dict[str, List[float]] = {name: [] for name in names}
    for rep in range(reps):
        order = names[rep % len(names):] + names[:rep % len(names)]
        for name in order:
            start = time.perf_counter()
            fns[name]()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (``q`` in ``[0, 100]``) of at least one value, linear between
    order statistics (numpy's default method)."""
    if not samples or not 0 <= q <= 100:
        raise ValueError(f'need samples and 0 <= q <= 100, got {len(samples)} samples, q={q}')
    return float(np.percentile(samples, q))


def summarize(samples: Sequence[float], items_per_call: int = 1) -> Dict[str, float]:
    """Latency statistics of a list of durations.

    Args:
        samples: Durations in seconds.
        items_per_call: Images or frames per call, for the throughput.

    Returns:
        ``median_ms``, ``mean_ms``, ``min_ms``, ``p90_ms``, ``p99_ms``, ``reps`` and
        ``fps`` (items per second at the median latency).
    """
    median = statistics.median(samples)
    return dict(median_ms=1e3 * median, mean_ms=1e3 * statistics.fmean(samples),
                min_ms=1e3 * min(samples), p90_ms=1e3 * percentile(samples, 90),
                p99_ms=1e3 * percentile(samples, 99), reps=len(samples),
                fps=items_per_call / median)


@contextlib.contextmanager
def num_threads(threads: int) -> Iterator[None]:
    """Runs the block with ``torch.set_num_threads(threads)`` (0 keeps the current)."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
