"""The unpickling policy: weights-only loading of mmengine checkpoints on torch >= 2.6.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``: it unpickles
only tensors, containers and allow-listed globals. mmengine 0.10.7 calls
``torch.load`` without the argument, and a Runner's checkpoints hold more: the
message hub's ``HistoryBuffer`` objects (numpy arrays, references to the
buffer's statistics methods) and numpy scalars, so ``--resume`` and
``load_from`` fail with "Weights only load failed".

:func:`allow_mmengine_checkpoints` is a context manager (torch's scoped
``torch.serialization.safe_globals``) that allow-lists exactly those types;
weights-only loading stays on, and everything else stays refused. The one
risky global a HistoryBuffer pickle uses, ``builtins.getattr`` (pickle's way to
reach ``HistoryBuffer.min`` and friends), is mapped to
:func:`history_buffer_getattr`, which resolves only those methods.

Checkpoints written with :class:`mmregnet.runtime.portable_checkpoint.PortableCheckpointHook`
(our tools and configs) need none of this; the allow-list is for older ones
and those of mmengine alone.

>>> import io, torch
>>> from mmengine.logging import HistoryBuffer
>>> buffer = io.BytesIO()
>>> torch.save({'loss': HistoryBuffer([1.0, 2.0], [1, 1])}, buffer)
>>> _ = buffer.seek(0)
>>> with allow_mmengine_checkpoints():
...     torch.load(buffer)['loss'].mean()
1.5
"""
import contextlib
import pickle
from typing import Any, Callable, Iterator, List, Tuple, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

SafeGlobal = Union[Callable, Tuple[Callable, str]]
# Registered by every HistoryBuffer's __init__, so absent before the first one exists.
_DEFAULT_STATISTICS = ('min', 'max', 'current', 'mean')


def _numpy_multiarray() -> Tuple[Any, str]:
    """numpy's multiarray module and the name pickles use for it (moved in numpy 2)."""
    if hasattr(np, '_core') and hasattr(np._core, 'multiarray'):
        return np._core.multiarray, 'numpy._core.multiarray'
    return np.core.multiarray, 'numpy.core.multiarray'


def history_buffer_getattr(owner: Any, name: str) -> Callable:
    """A ``getattr`` limited to the statistics methods of mmengine's HistoryBuffer.

    Args:
        owner: Must be the ``HistoryBuffer`` class.
        name: A registered statistics method (``min``, ``max``, ``mean``,
            ``current`` or one added with ``HistoryBuffer.register_statistics``).

    Returns:
        The method.

    Raises:
        pickle.UnpicklingError: Any other attribute of any other object.
    """
    allowed = set(_DEFAULT_STATISTICS) | set(HistoryBuffer._statistics_methods)
    if owner is HistoryBuffer and name in allowed:
        return getattr(owner, name)
    raise pickle.UnpicklingError(
        f'weights-only load of an mmengine checkpoint may look up the HistoryBuffer '
        f'statistics methods {sorted(allowed)} only, not {name!r} of {owner!r}')


def mmengine_checkpoint_globals() -> List[SafeGlobal]:
    """The globals an mmengine Runner checkpoint needs beyond torch's defaults.

    Returns:
        Entries for ``torch.serialization.safe_globals``: the HistoryBuffer
        class, numpy's array and scalar reconstructors, ``numpy.ndarray``,
        ``numpy.dtype`` and numpy's dtype classes (numpy >= 1.25 pickles
        ``dtype`` objects through them), and the restricted ``getattr``.
    """
    multiarray, multiarray_name = _numpy_multiarray()
    entries: List[SafeGlobal] = [
        HistoryBuffer,
        (multiarray._reconstruct, f'{multiarray_name}._reconstruct'),
        (multiarray.scalar, f'{multiarray_name}.scalar'),
        np.ndarray,
        np.dtype,
        (history_buffer_getattr, 'builtins.getattr'),
    ]
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        entries += [(cls, f'numpy.dtypes.{name}') for name, cls in vars(dtypes).items()
                    if isinstance(cls, type) and issubclass(cls, np.dtype)]
    return entries


@contextlib.contextmanager
def allow_mmengine_checkpoints() -> Iterator[None]:
    """Within the block, ``torch.load`` (weights-only) accepts mmengine checkpoints.

    Scoped: the allow-list is removed again on exit, and weights-only loading
    is never switched off.
    """
    with torch.serialization.safe_globals(mmengine_checkpoint_globals()):
        yield
