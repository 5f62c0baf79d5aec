"""mmregnet's registries, children of mmdet3d's, else mmdet's, else mmpretrain's.

Configs in any OpenMMLab scope reach mmregnet's models as ``'mmregnet.RegNet'``;
mmdet3d configs (default scope ``mmdet3d``) also as plain ``'RegNet'``, because
the backbone is registered into mmdet3d's registry too. mmdet's own ``RegNet``
stays what ``'mmdet.RegNet'`` and mmdet-scoped ``'RegNet'`` resolve to. The
parent is the first of those installed, so a classification-only install
(mmpretrain, no mmdet) builds an ``ImageClassifier`` with ``mmregnet.RegNet``.
"""
import importlib

from mmengine.registry import Registry

from .mim import register_config_package

#: The OpenMMLab packages whose registries may parent ours, the preferred first.
PARENT_SCOPES = ('mmdet3d', 'mmdet', 'mmpretrain')

for _scope in PARENT_SCOPES:
    try:
        _parent = importlib.import_module(f'{_scope}.registry')
        break
    except ImportError:
        continue
else:
    raise ImportError(f'mmregnet\'s models need one of {", ".join(PARENT_SCOPES)}; install an '
                      'extra: pip install "mmregnet[3d]" (or [det], [cls])')
PARENT_MODELS, PARENT_HOOKS, PARENT_METRICS = _parent.MODELS, _parent.HOOKS, _parent.METRICS
MODELS = Registry('model', parent=PARENT_MODELS, scope='mmregnet',
                  locations=['mmregnet.models'])
HOOKS = Registry('hook', parent=PARENT_HOOKS, scope='mmregnet',
                 locations=['mmregnet.detection', 'mmregnet.runtime.portable_checkpoint',
                            'mmregnet.runtime.atomic_saves'])
METRICS = Registry('metric', parent=PARENT_METRICS, scope='mmregnet',
                   locations=['mmregnet.runtime.atomic_saves'])

register_config_package()
