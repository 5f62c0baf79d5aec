"""Running mmengine's Runner from the command line: config handling, resume
from the newest complete checkpoint, and the torch weights-only shim."""
# The tools import this package before any config is read, so the package's
# own import was the light one: register the backbone and hooks here, before a
# config's custom_imports finds mmregnet already imported.
from .. import detection, models  # noqa: F401
from .checkpoints import (checkpoint_candidates, find_resumable_checkpoint,
                          is_complete_checkpoint, read_last_checkpoint)
from .launch import add_common_args, build_runner, load_config, resolve_resume, test, train

__all__ = ['add_common_args', 'build_runner', 'checkpoint_candidates',
           'find_resumable_checkpoint', 'is_complete_checkpoint', 'load_config',
           'read_last_checkpoint', 'resolve_resume', 'test', 'train']
