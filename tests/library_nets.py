"""The source libraries' own RegNets with random weights, and the checks the converter tests share.

Every network is built by its library (pycls 0.1.1's ``AnyNet``, timm 1.0.31's model
registry, torchvision 0.29.1's builders and ``RegNet`` class), never rebuilt here. Its
BatchNorms then get random statistics and affine terms, so that a swapped or misplaced
tensor shows in the outputs.
"""
import contextlib
import io
from typing import Dict, List, Optional, Sequence

import timm
import torch
import torch.nn as nn
import torchvision
from torchvision.models.regnet import BlockParams, RegNet as TorchvisionRegNet

from mmregnet import PRESETS, RegNet
from mmregnet.convert.cli import main as regnet2mmdet

from norms import randomize_norms

#: torchvision's builders -> the preset with the same (w0, wa, wm, depth, group_w, SE), or
#: None: regnet_y_128gf (SEER's size) is no pycls model.
TORCHVISION_BUILDERS: Dict[str, Optional[str]] = {
    'regnet_x_400mf': 'regnetx_400mf', 'regnet_x_800mf': 'regnetx_800mf',
    'regnet_x_1_6gf': 'regnetx_1.6gf', 'regnet_x_3_2gf': 'regnetx_3.2gf',
    'regnet_x_8gf': 'regnetx_8.0gf', 'regnet_x_16gf': 'regnetx_16gf',
    'regnet_x_32gf': 'regnetx_32gf', 'regnet_y_400mf': 'regnety_400mf',
    'regnet_y_800mf': 'regnety_800mf', 'regnet_y_1_6gf': 'regnety_1.6gf',
    'regnet_y_3_2gf': 'regnety_3.2gf', 'regnet_y_8gf': 'regnety_8.0gf',
    'regnet_y_16gf': 'regnety_16gf', 'regnet_y_32gf': 'regnety_32gf', 'regnet_y_128gf': None,
}
#: Presets whose stage widths torchvision's rounding changes (X-400MF, X-4.0GF, Y-800MF,
#: Y-4.0GF, Y-8.0GF): their torchvision (and timm ``*_tv``) weights need an arch dict.
TORCHVISION_CHANGED = ('regnetx_400mf', 'regnetx_4.0gf', 'regnety_800mf', 'regnety_4.0gf',
                       'regnety_8.0gf')
_SIZES = ('002', '004', '006', '008', '016', '032', '040', '064', '080', '120', '160', '320')
#: timm's names of the 24 pycls models, then its three models with torchvision's rounding.
TIMM_MODELS = [f'regnet{f}_{s}' for f in 'xy' for s in _SIZES] + [
    'regnetx_004_tv', 'regnety_008_tv', 'regnety_080_tv']


def torchvision_params(preset: str) -> BlockParams:
    """torchvision's stage parameters for a preset's numbers, computed as its builders do."""
    s = PRESETS[preset]
    return BlockParams.from_init_params(depth=s.depth, w_0=s.w0, w_a=s.wa, w_m=s.wm,
                                        group_width=s.group_w, se_ratio=s.se_ratio)


def torchvision_preset_net(preset: str, device: str = 'cpu') -> nn.Module:
    """torchvision's ``RegNet`` class with a preset's numbers: torchvision's layout and
    rounding for any preset (``device='meta'`` for shapes only)."""
    params = torchvision_params(preset)  # torch arithmetic: not on the meta device
    with torch.device(device):
        return TorchvisionRegNet(params)


def library_net(library: str, name: str, seed: int = 0) -> nn.Module:
    """A library's RegNet with seeded random weights and BN statistics, in eval mode.

    Args:
        library: ``'timm'`` (``name`` is a timm model name) or ``'torchvision'`` (a builder).
        name: The model.
        seed: Seed of the weights.
    """
    torch.manual_seed(seed)
    if library == 'timm':
        net = timm.create_model(name)
    else:
        net = getattr(torchvision.models, name)()
    return randomize_norms(net, seed).eval()


def library_stages(net: nn.Module) -> List[nn.Module]:
    """The stem, then each stage, of a pycls, timm or torchvision RegNet (its own modules)."""
    if hasattr(net, 'trunk_output'):  # torchvision
        return [net.stem] + list(net.trunk_output.children())
    return [net.stem] + [getattr(net, f's{i}') for i in range(1, 5)]  # pycls, timm


def stage_outputs(stages: Sequence[nn.Module], x: torch.Tensor) -> List[torch.Tensor]:
    """Each stage's output (after the stem) for input ``x``."""
    outs = []
    with torch.no_grad():
        for stage in stages:
            x = stage(x)
            outs.append(x)
    return outs[1:]


def assert_close_rel(ours: Sequence[torch.Tensor], theirs: Sequence[torch.Tensor],
                     rtol: float = 1e-4) -> None:
    """Each pair differs by at most ``rtol`` times the reference's largest magnitude."""
    assert len(ours) == len(theirs)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert a.shape == b.shape, (i, a.shape, b.shape)
        scale = b.abs().max().item()
        assert scale > 0 and (a - b).abs().max().item() <= rtol * scale, (i, scale)


def run_converter(*argv) -> str:
    """Runs ``regnet2mmdet`` in this process; returns its standard output (it must succeed)."""
    with contextlib.redirect_stdout(io.StringIO()) as out:
        code = regnet2mmdet([str(a) for a in argv])
    assert code == 0, out.getvalue()
    return out.getvalue()


def load_converted(path) -> tuple:
    """Loads a converted file (memory-mapped) strictly into ``RegNet(meta['arch'], ...)``.

    Returns:
        The backbone in eval mode, returning every stage, and the file's meta.
    """
    ckpt = torch.load(path, weights_only=True, mmap=True)
    meta = ckpt['meta']
    with torch.device('meta'):  # no init: every tensor is assigned from the file
        net = RegNet(meta['arch'], out_indices=tuple(range(len(meta['stages']['widths']))),
                     **meta['backbone'])
    net.load_state_dict(ckpt['state_dict'], strict=True, assign=True)
    return net.eval(), meta
