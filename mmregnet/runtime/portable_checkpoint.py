"""Runner checkpoints that torch's weights-only unpickler loads as they are.

mmengine 0.10.7's Runner saves, next to the weights, the message hub's state:
a ``HistoryBuffer`` per logged scalar (numpy arrays inside, pickled through
their class, numpy's reconstructors and ``builtins.getattr``) and numpy
scalars such as the ETA. torch >= 2.6 loads with ``weights_only=True`` by
default, so plain ``torch.load``, mmengine's ``load_checkpoint`` and
``mmdet3d.apis.init_model`` refuse such a file ("Weights only load failed")
unless the loading process allow-lists those globals.

:class:`PortableCheckpointHook` makes the file itself safe instead. In
``before_save_checkpoint`` (after the Runner has gathered what it saves) it
rewrites the checkpoint with :func:`to_portable`: each ``HistoryBuffer``
becomes the dict of its constructor's arguments
(``log_history``/``count_history`` as tensors, ``max_length``), and every
numpy scalar becomes the Python number of the same value. In
``after_load_checkpoint``, which ``Runner.resume`` calls before it reads the
message hub, :func:`from_portable` rebuilds the buffers, so ``--resume``
restores the full training state. Everything else (weights, optimizer,
schedulers, meta) is saved as the Runner made it.

A resume without this hook (mmengine alone) still works: mmengine skips
log scalars that are not ``HistoryBuffer`` objects with a warning, so only
the smoothed log history restarts. Checkpoints written before this hook
existed still load in our tools through
:func:`mmregnet.compat.allow_mmengine_checkpoints`, and :func:`from_portable`
leaves their buffers as they are.

The tools add the hook to every Runner they build (:func:`add_portable_hook`);
``configs/_base_/mmregnet_runtime.py`` lists it too, so mmdet3d's or mim's own
training tools write portable checkpoints with mmregnet's configs.
"""
import copy
from typing import Any, Dict

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer

from ..registry import HOOKS

#: The keys of a saved HistoryBuffer: its constructor's arguments.
BUFFER_KEYS = frozenset(('log_history', 'count_history', 'max_length'))


def _array_state(array: np.ndarray) -> Any:
    """A tensor with the array's dtype and values (a list where torch has no such dtype)."""
    try:
        return torch.from_numpy(np.ascontiguousarray(array)).clone()
    except TypeError:
        return array.tolist()


def buffer_state(buffer: HistoryBuffer) -> Dict[str, Any]:
    """A HistoryBuffer as weights-only-loadable data: its constructor's arguments.

    Args:
        buffer: mmengine's HistoryBuffer.

    Returns:
        ``{'log_history': tensor, 'count_history': tensor, 'max_length': int}``.
    """
    log_history, count_history = buffer.data
    return dict(log_history=_array_state(log_history),
                count_history=_array_state(count_history), max_length=int(buffer.max_length))


def is_buffer_state(value: Any) -> bool:
    """Whether ``value`` is what :func:`buffer_state` returns."""
    return isinstance(value, dict) and set(value) == BUFFER_KEYS


def load_buffer(state: Dict[str, Any]) -> HistoryBuffer:
    """The HistoryBuffer that :func:`buffer_state` saved (same values and dtypes)."""
    arrays = [v.numpy() if torch.is_tensor(v) else np.array(v)
              for v in (state['log_history'], state['count_history'])]
    return HistoryBuffer(arrays[0], arrays[1], int(state['max_length']))


def python_scalars(value: Any) -> Any:
    """``value`` with every numpy scalar inside dicts, lists and tuples made a Python number.

    ``np.float64(x)`` becomes ``float(x)``, ``np.int64(n)`` ``int(n)``,
    ``np.bool_`` ``bool``: the same values. A container holding one is
    copied (shallowly, keeping its type and attributes such as a state
    dict's ``_metadata``) rather than changed, since the Runner's state dicts
    share lists with live objects; anything else is returned as it is.
    """
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        changed = {}
        for key, item in value.items():
            new = python_scalars(item)
            if new is not item:
                changed[key] = new
        if not changed:
            return value
        copied = copy.copy(value)
        copied.update(changed)
        return copied
    if isinstance(value, (list, tuple)):
        items = [python_scalars(item) for item in value]
        if all(new is item for new, item in zip(items, value)):
            return value
        if isinstance(value, list):
            copied = copy.copy(value)
            copied[:] = items
            return copied
        return type(value)._make(items) if hasattr(value, '_make') else type(value)(items)
    return value


def to_portable(checkpoint: Dict[str, Any]) -> Dict[str, Any]:
    """Makes a Runner checkpoint weights-only loadable, in place (see the module doc).

    Args:
        checkpoint: What ``Runner.save_checkpoint`` is about to save.

    Returns:
        ``checkpoint``, its message hub's HistoryBuffers and all numpy
        scalars replaced.
    """
    hub = checkpoint.get('message_hub')
    if isinstance(hub, dict) and isinstance(hub.get('log_scalars'), dict):
        scalars = hub['log_scalars']
        for key, value in list(scalars.items()):
            if isinstance(value, HistoryBuffer):
                scalars[key] = buffer_state(value)
    for key, value in list(checkpoint.items()):
        checkpoint[key] = python_scalars(value)
    return checkpoint


def from_portable(checkpoint: Dict[str, Any]) -> Dict[str, Any]:
    """Rebuilds the message hub's HistoryBuffers of a :func:`to_portable` checkpoint, in place.

    Args:
        checkpoint: A loaded checkpoint (any: an older one, with the buffers
            themselves, or one without a message hub is left as it is).

    Returns:
        ``checkpoint``.
    """
    hub = checkpoint.get('message_hub')
    if isinstance(hub, dict) and isinstance(hub.get('log_scalars'), dict):
        scalars = hub['log_scalars']
        for key, value in list(scalars.items()):
            if is_buffer_state(value):
                scalars[key] = load_buffer(value)
    return checkpoint


@HOOKS.register_module()
class PortableCheckpointHook(Hook):
    """Saves Runner checkpoints that ``torch.load(..., weights_only=True)`` accepts.

    See the module doc. Its priority is very low, so that it converts what
    other hooks add in ``before_save_checkpoint``.
    """

    priority = 'VERY_LOW'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Converts the checkpoint about to be saved (:func:`to_portable`)."""
        to_portable(checkpoint)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Rebuilds the message hub's buffers before a resume reads them."""
        from_portable(checkpoint)


def add_portable_hook(runner) -> bool:
    """Registers a :class:`PortableCheckpointHook` unless the runner has one.

    Args:
        runner: mmengine's Runner.

    Returns:
        Whether a hook was added.
    """
    if any(isinstance(hook, PortableCheckpointHook) for hook in runner.hooks):
        return False
    runner.register_hook(PortableCheckpointHook())
    return True
