"""Shared fixtures: the preset list, a cache of built backbones, the pycls oracle."""
import copy
import functools

import pytest
import torch

from mmregnet import PRESETS, RegNet
from mmregnet.backbone_configs import bev_layout

ALL_PRESETS = list(PRESETS)
X_PRESETS = [n for n in ALL_PRESETS if n.startswith('regnetx')]


#: The preset whose network sweeps (NETWORK_SWEEPS) stay in the quick tier, ``make
#: test-quick``: RegNetY 200MF has every block feature (groups, SE). The other presets'
#: are marked slow; ``make test`` runs all of them.
QUICK_PRESET = 'regnety_200mf'
#: Modules, or tests (``module::test``), whose per-preset tests build the preset's network
#: (seconds to a minute each).
NETWORK_SWEEPS = ('test_backbone.py', 'test_deploy.py',
                  'test_complexity.py::test_backbone_complexity_equals_built_network',
                  'test_design_space.py::test_show_outputs_equal_the_built_backbone')


def pytest_collection_modifyitems(items):
    """Runs each preset's tests together, so the backbone cache needs one preset at a time."""
    def key(item):
        callspec = getattr(item, 'callspec', None)
        name = callspec.params.get('name') if callspec else None
        return (str(item.fspath), ALL_PRESETS.index(name) if name in ALL_PRESETS else -1)
    items.sort(key=key)
    for item in items:
        callspec = getattr(item, 'callspec', None)
        name = callspec.params.get('name') if callspec else None
        swept = any(f'{s}::' in item.nodeid or f'{s}[' in item.nodeid for s in NETWORK_SWEEPS)
        if swept and name in ALL_PRESETS and name != QUICK_PRESET:
            item.add_marker(pytest.mark.slow)


# Stem and stem-less of one preset; the big presets are 0.6 GB each, so keep no more.
@functools.lru_cache(maxsize=2)
def _built(arch, with_stem):
    torch.manual_seed(0)
    kwargs = dict(with_stem=True) if with_stem else bev_layout()
    # PyTorch's default init (BN gamma 1): every branch carries signal and gradient.
    return RegNet(arch, zero_init_residual=False, norm_eval=False, **kwargs)


@pytest.fixture
def build():
    """Returns a fresh copy of a backbone (built once per preset and stem flag)."""
    def _build(arch, with_stem=True):
        return copy.deepcopy(_built(arch, with_stem))
    return _build


def pycls_anynet_kwargs(arch_name, num_classes=1000):
    """The AnyNet arguments pycls derives for a preset, with pycls's own functions."""
    from pycls.models import regnet as pr
    spec = PRESETS[arch_name]
    ws, num_stages, _, _ = pr.generate_regnet(spec.wa, spec.w0, spec.wm, spec.depth)
    s_ws, s_ds = pr.get_stages_from_blocks(ws, ws)
    s_gs = [spec.group_w] * num_stages
    s_bs = [spec.bot_mul] * num_stages
    s_ws, s_gs = pr.adjust_ws_gs_comp(s_ws, s_bs, s_gs)
    return dict(stem_type='simple_stem_in', stem_w=32, block_type='res_bottleneck_block',
                ds=s_ds, ws=s_ws, ss=[2] * num_stages, bms=s_bs, gws=s_gs,
                se_r=spec.se_ratio, nc=num_classes)
