"""Which OpenMMLab package's registries a config's names resolve in.

mmengine's Runner builds every ``type=...`` in the config's ``default_scope``
and falls back to mmengine's own registries without one, where no detector
or classifier is found. The tools run mmdet3d (PointPillars), mmdet (2D
detectors) and mmpretrain (classifiers) configs, so they read the scope from
the config: its ``default_scope``; else the scope mmengine recorded on the
model when the config inherited it from a ``'<package>::'`` base; else a
scoped model type (``'mmpretrain.ImageClassifier'``); else the one package
whose registry holds the model's type.
"""
import importlib
from typing import Optional

from mmengine.config import Config

from ..errors import InputError
from ..registry import PARENT_SCOPES as SCOPES  # the packages whose configs the tools run


def _registry_holds(scope: str, model_type: str) -> bool:
    try:
        registry = importlib.import_module(f'{scope}.registry').MODELS
    except ImportError:  # the package is not installed
        return False
    registry.import_from_location()
    return model_type in registry.module_dict


def config_scope(cfg: Config) -> str:
    """The default scope a config's runner must use (see the module's docstring).

    Args:
        cfg: A loaded config.

    Raises:
        InputError: The config names no scope and its model type is in none,
            or more than one, of the packages' registries.
    """
    scope: Optional[str] = cfg.get('default_scope')
    if scope:
        return scope
    model = cfg.get('model') or {}
    if model.get('_scope_'):
        return model['_scope_']
    model_type = model.get('type')
    if isinstance(model_type, str) and '.' in model_type:
        return model_type.split('.', 1)[0]
    holders = [s for s in SCOPES if isinstance(model_type, str) and _registry_holds(s, model_type)]
    if len(holders) != 1:
        where = f'is in the registries of {", ".join(holders)}' if holders else \
            f'is in none of the registries of {", ".join(SCOPES)}'
        raise InputError(f'config {cfg.filename}: sets no default_scope and its model type '
                         f'{model_type!r} {where}; add default_scope = "mmdet3d", "mmdet" '
                         f'or "mmpretrain" to the config')
    return holders[0]
