"""What a Runner writes, written whole or not at all: checkpoints and dumped predictions.

mmengine 0.10.7 writes a checkpoint in place (``LocalBackend.put``), and its
``CheckpointHook`` deletes the checkpoint that ``max_keep_ckpts`` or a new
best retires *before* it saves the new one. A full disk or a kill mid-save
then leaves a truncated ``epoch_N.pth`` (the newest by name) and may already
have deleted the last good one. Here:

- :class:`AtomicLocalBackend` is mmengine's local file backend writing
  through :func:`mmregnet.fileio.write_bytes`: a temporary in the same
  folder, synced, then renamed onto the name; a failure raises
  :class:`~mmregnet.faults.WriteError` (path, cause, bytes needed and free)
  and leaves nothing. Any mmengine writer takes it by
  ``backend_args=dict(backend='mmregnet_atomic')``.
- :class:`AtomicCheckpointHook` is mmengine's ``CheckpointHook`` saving local
  checkpoints (regular, ``save_last``, ``save_best``) through that backend.
  It removes at the start what the temporaries of killed runs left in its
  folder, and removes a retired checkpoint only after the new one is whole,
  so a failed save leaves every earlier checkpoint and ``last_checkpoint``
  (which mmengine writes after the save) as they were. A failed save is
  logged, the log flushed, and the error raised. Its names, ``interval``,
  ``max_keep_ckpts``, ``out_dir`` and ``save_best`` behave as mmengine's;
  keeping ``max_keep_ckpts`` checkpoints needs room for one more while the
  next one is written. (``published_keys`` copies, made once training has
  ended, are written by mmengine as they were.)
- :class:`AtomicDumpResults` is mmengine's ``DumpResults``
  (``tools/test.py --out``) writing through the backend.

The tools' runners use them (:func:`use_atomic_saves`, called by
:func:`mmregnet.runtime.launch.build_runner`); a config can name them
itself: ``default_hooks = dict(checkpoint=dict(type='mmregnet.AtomicCheckpointHook'))``.
"""
import contextlib
import logging
import os
from typing import Iterator, List, Optional, Union

from mmengine.config import Config
from mmengine.dist import is_main_process
from mmengine.evaluator import DumpResults
from mmengine.fileio import LocalBackend, dump, get_file_backend, register_backend
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log

from ..errors import fault, message
from ..faults import WriteError
from ..fileio import remove_stale_parts_in, write_bytes
from ..registry import HOOKS, METRICS

#: The name of :class:`AtomicLocalBackend` in ``backend_args``.
BACKEND = 'mmregnet_atomic'
#: How a config names :class:`AtomicCheckpointHook`.
ATOMIC_HOOK = 'mmregnet.AtomicCheckpointHook'
#: How a config names mmengine's own checkpoint hook.
_MMENGINE_HOOK = ('CheckpointHook', 'mmengine.CheckpointHook', CheckpointHook)


@register_backend(BACKEND)
class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend, writing each file whole or not at all.

    Removals can be held back (:meth:`removals_held`) until the writes that
    replace the removed files have succeeded.
    """

    def __init__(self) -> None:
        super().__init__()
        self._held: Optional[List[str]] = None

    def put(self, obj: bytes, filepath: Union[str, os.PathLike]) -> None:
        """Writes ``obj`` to ``filepath`` atomically, creating its folder (as mmengine does)."""
        filepath = os.fspath(filepath)
        try:
            os.makedirs(os.path.dirname(os.path.abspath(filepath)), exist_ok=True)
        except OSError as e:
            raise WriteError(filepath, 'mkdir', e.errno) from e
        write_bytes(filepath, obj, force=True)

    def put_text(self, obj: str, filepath: Union[str, os.PathLike],
                 encoding: str = 'utf-8') -> None:
        """Writes the text ``obj`` to ``filepath`` atomically."""
        self.put(obj.encode(encoding), filepath)

    def remove(self, filepath: Union[str, os.PathLike]) -> None:
        """Removes a file, or notes it while removals are held."""
        if self._held is not None:
            self._held.append(os.fspath(filepath))
        else:
            super().remove(filepath)

    def rmtree(self, dir_path: Union[str, os.PathLike]) -> None:
        """Removes a folder tree, or notes it while removals are held."""
        if self._held is not None:
            self._held.append(os.fspath(dir_path))
        else:
            super().rmtree(dir_path)

    @contextlib.contextmanager
    def removals_held(self) -> Iterator[List[str]]:
        """Within the block, :meth:`remove` and :meth:`rmtree` only note their path.

        Yields:
            The list of the paths noted; the caller removes them (or not).
        """
        self._held = held = []
        try:
            yield held
        finally:
            self._held = None

    def remove_now(self, path: str) -> None:
        """Removes the file or folder tree ``path`` if it is there."""
        if self.isfile(path):
            super().remove(path)
        elif self.isdir(path):
            super().rmtree(path)


def _flush(logger: logging.Logger) -> None:
    for handler in logger.handlers:
        handler.flush()


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook``, its local checkpoints written whole or not at all.

    Takes ``CheckpointHook``'s arguments; see the module doc. Checkpoints
    to a remote ``out_dir`` or through a backend of the config's own are
    saved as ``CheckpointHook`` saves them.
    """

    def before_train(self, runner) -> None:
        """Picks the backend and removes the temporaries that killed runs left."""
        super().before_train(runner)
        if self.file_client_args is None and type(self.file_backend) is LocalBackend:
            self.backend_args = dict(self.backend_args or {}, backend=BACKEND)
            self.file_backend = get_file_backend(self.out_dir, backend_args=self.backend_args)
        if isinstance(self.file_backend, AtomicLocalBackend) and is_main_process():
            for path in remove_stale_parts_in(self.out_dir):
                runner.logger.info(f'removed {path}, left unfinished by a killed run')

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        """Saves as ``CheckpointHook`` does (see :meth:`_saving`)."""
        with self._saving(runner):
            super().after_train_iter(runner, batch_idx, data_batch, outputs)

    def after_train_epoch(self, runner) -> None:
        """Saves as ``CheckpointHook`` does (see :meth:`_saving`)."""
        with self._saving(runner):
            super().after_train_epoch(runner)

    def after_val_epoch(self, runner, metrics) -> None:
        """Saves the best checkpoint as ``CheckpointHook`` does (see :meth:`_saving`)."""
        with self._saving(runner):
            super().after_val_epoch(runner, metrics)

    def _in_use(self) -> set:
        """The checkpoints this hook refers to: the last and the best ones."""
        paths = {self.last_ckpt, getattr(self, 'best_ckpt_path', None)}
        paths.update((getattr(self, 'best_ckpt_path_dict', None) or {}).values())
        return {os.fspath(path) for path in paths if path}

    @contextlib.contextmanager
    def _saving(self, runner) -> Iterator[None]:
        """Removes what the block retires only once its saves succeeded; logs a failure."""
        backend = self.file_backend
        if not isinstance(backend, AtomicLocalBackend):
            yield
            return
        try:
            with backend.removals_held() as retired:
                yield
        except Exception as e:  # noqa: BLE001 - logged, then raised as it is
            found = fault(e)
            if found is not None:
                runner.logger.error(message(found))
                _flush(runner.logger)
            raise
        if retired:  # most iterations retire nothing
            in_use = self._in_use()
            for path in retired:
                if path not in in_use:
                    backend.remove_now(path)


@METRICS.register_module()
class AtomicDumpResults(DumpResults):
    """mmengine's ``DumpResults``, its ``.pkl`` written whole or not at all."""

    def compute_metrics(self, results: list) -> dict:
        """Dumps the predictions to ``out_file_path`` (see :class:`AtomicLocalBackend`)."""
        dump(results, self.out_file_path, backend_args=dict(backend=BACKEND))
        print_log(f'Results has been saved to {self.out_file_path}.', logger='current')
        return {}


def use_atomic_saves(cfg: Config) -> bool:
    """Makes the config's checkpoint hook an :class:`AtomicCheckpointHook`.

    The Runner adds mmengine's ``CheckpointHook`` when the config names none;
    that one is replaced too. A hook of another type, or one turned off
    (``default_hooks.checkpoint=None``), is left as it is.

    Args:
        cfg: The run's config, changed in place.

    Returns:
        Whether the hook was replaced.
    """
    # mmengine's Runner adds this hook when the config names none.
    default = dict(type='CheckpointHook', interval=1)
    hook = (cfg.get('default_hooks') or {}).get('checkpoint', default)
    if hook is None or hook.get('type') not in _MMENGINE_HOOK:
        return False
    cfg.merge_from_dict({'default_hooks.checkpoint': dict(hook, type=ATOMIC_HOOK)})
    return True
