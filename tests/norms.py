"""Random BatchNorm statistics for the tests: with fresh (identity) norms, a folded or
converted network would match its reference even with its norms misplaced."""
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm


def randomize_norms(module: nn.Module, seed: int = 0) -> nn.Module:
    """Gives every BatchNorm of ``module`` random statistics and affine terms, in place."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, _BatchNorm) and m.running_mean is not None:
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
                if m.weight is not None:
                    m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                    m.bias.copy_(torch.rand(c, generator=gen) - 0.5)
    return module
