"""Lets mmengine resolve ``mmregnet::`` config paths, as it does ``mmdet3d::``.

mmengine 0.10.7 resolves ``_base_ = ['PACKAGE::path/to/config.py']`` only for the
packages named in its fixed table ``mmengine.config.utils.MODULE2PACKAGE``, and
finds a package's ``.mim/configs`` folder through its distribution's location,
which for an editable (PEP 660) install is site-packages, not the source tree.

:func:`register_config_package` is the documented shim: it adds one entry to
that table, mapping ``mmregnet`` to ``mmregnet.mim`` (this module). mmengine
then finds no distribution of that name and falls back to the module's own
folder, which is the package folder in every kind of install. Nothing else of
mmengine changes. It runs when the backbone is registered (importing
``mmregnet.models``, or ``mmregnet`` once mmengine is loaded, as a config's
``custom_imports`` does), so our tools and any script that imports mmregnet's
models can read configs whose bases live in mmregnet.
"""
import os

#: The name mmengine looks up; its module's folder is the package folder.
LOCATOR = __name__


def register_config_package() -> None:
    """Adds ``mmregnet`` to mmengine's table of packages with ``::`` configs."""
    from mmengine.config import utils  # lazy: `import mmregnet` stays free of mmengine
    utils.MODULE2PACKAGE.setdefault('mmregnet', LOCATOR)


def configs_root() -> str:
    """The folder that holds the shipped configs (``mmregnet/.mim/configs``)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), '.mim', 'configs')
