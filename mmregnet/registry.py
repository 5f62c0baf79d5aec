"""mmregnet's model registry, a child of mmdet3d's (or, without mmdet3d, mmdet's).

Configs in any OpenMMLab scope reach mmregnet's models as ``'mmregnet.RegNet'``;
mmdet3d configs (default scope ``mmdet3d``) also as plain ``'RegNet'``, because
the backbone is registered into mmdet3d's registry too. mmdet's own ``RegNet``
stays what ``'mmdet.RegNet'`` and mmdet-scoped ``'RegNet'`` resolve to.
"""
from mmengine.registry import Registry

from .mim import register_config_package

try:
    from mmdet3d.registry import HOOKS as PARENT_HOOKS
    from mmdet3d.registry import METRICS as PARENT_METRICS
    from mmdet3d.registry import MODELS as PARENT_MODELS
except ImportError:  # a 2D-only install
    from mmdet.registry import HOOKS as PARENT_HOOKS
    from mmdet.registry import METRICS as PARENT_METRICS
    from mmdet.registry import MODELS as PARENT_MODELS

MODELS = Registry('model', parent=PARENT_MODELS, scope='mmregnet',
                  locations=['mmregnet.models'])
HOOKS = Registry('hook', parent=PARENT_HOOKS, scope='mmregnet',
                 locations=['mmregnet.detection', 'mmregnet.runtime.portable_checkpoint',
                            'mmregnet.runtime.atomic_saves'])
METRICS = Registry('metric', parent=PARENT_METRICS, scope='mmregnet',
                   locations=['mmregnet.runtime.atomic_saves'])

register_config_package()
