"""``--verify``: load the converted weights strictly, and compare with the source network.

The strict load catches any missing, unexpected or reshaped tensor; the
comparison (where the source library is importable) runs the source
library's network and mmregnet's on one random input and reports the largest
difference over every stage's output.
"""
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor

from ..arch import ArchLike, get_arch
from ..checkpoint.errors import ConversionError
from .library_models import Reference

#: Stage outputs may differ by float32 rounding only: |diff| <= RTOL * max|ref| + ATOL.
RTOL, ATOL = 1e-4, 1e-5


@dataclass(frozen=True)
class VerifyReport:
    """What ``--verify`` checked.

    Attributes:
        arch: The arch the weights were loaded into (a name or a dict's text).
        tensors: How many tensors loaded strictly.
        reference: The source library compared against, or None.
        skipped: Why no comparison ran, or None.
        max_abs_diff: The largest stage-output difference, or None.
        max_abs_ref: The largest reference output magnitude (the scale of the difference).
    """

    arch: str
    tensors: int
    reference: Optional[str] = None
    skipped: Optional[str] = None
    max_abs_diff: Optional[float] = None
    max_abs_ref: Optional[float] = None

    def summary(self) -> str:
        """One line for the CLI."""
        line = f'verified: {self.tensors} tensors load strictly into RegNet({self.arch})'
        if self.reference:
            return (f'{line}; largest stage-output difference vs {self.reference}: '
                    f'{self.max_abs_diff:.3g} (outputs up to {self.max_abs_ref:.3g})')
        return f'{line}; no output comparison ({self.skipped})'

    def to_meta(self) -> Dict[str, Any]:
        """The report as plain types for the checkpoint's meta."""
        return dict(arch=self.arch, tensors=self.tensors, reference=self.reference,
                    skipped=self.skipped, max_abs_diff=self.max_abs_diff,
                    max_abs_ref=self.max_abs_ref)


def _examples(items: List[str]) -> str:
    return f'{len(items)} (e.g. {", ".join(items[:2])})' if items else '0'


def load_strictly(state: Mapping[str, Tensor], arch: ArchLike, label: str,
                  **backbone_kwargs: Any) -> torch.nn.Module:
    """Builds ``RegNet(arch, **backbone_kwargs)`` and loads ``state`` with nothing left over.

    Args:
        state: Backbone weights in mmregnet's keys.
        arch: The arch to build.
        label: How to name the arch in messages.
        **backbone_kwargs: ``in_channels``, ``with_stem``, ``stem_channels``, ``strides``.

    Returns:
        The loaded backbone in eval mode, returning every stage.

    Raises:
        ConversionError: Any missing, unexpected or differently shaped tensor, or
            an arch that cannot be built.
    """
    from ..models import RegNet  # lazy: mmcv (and mmdet3d's registry) only when one is built
    try:
        every_stage = tuple(range(get_arch(arch).design().num_stages))
        net = RegNet(arch, out_indices=every_stage, **backbone_kwargs)
    except (ValueError, TypeError) as e:
        raise ConversionError(f'--verify {label}: {e}') from None
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [f'{k} {tuple(state[k].shape)} vs {tuple(v.shape)}'
                for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or reshaped:
        raise ConversionError(
            f'--verify {label}: the weights do not load into RegNet({label}): missing '
            f'{_examples(missing)}, unexpected {_examples(unexpected)}, other shape '
            f'{_examples(reshaped)}')
    net.load_state_dict(state, strict=True)
    return net.eval()


def compare_outputs(net: torch.nn.Module, ref: Reference, size: int = 64,
                    seed: int = 0) -> Tuple[float, float]:
    """Runs both networks on one random image batch and compares every stage's output.

    Args:
        net: mmregnet's backbone (returning every stage).
        ref: The source library's network.
        size: Input height and width.
        seed: Seed of the input.

    Returns:
        The largest absolute difference and the largest reference magnitude.
    """
    x = torch.randn(2, net.in_channels, size, size, generator=torch.Generator().manual_seed(seed))
    diff, scale = 0.0, 0.0
    with torch.no_grad():
        outs = net(x)
        y = ref.stages[0](x)
        for stage, out in zip(ref.stages[1:], outs):
            y = stage(y)
            diff = max(diff, (y - out).abs().max().item())
            scale = max(scale, y.abs().max().item())
    return diff, scale


def verify(state: Mapping[str, Tensor], arch: ArchLike, label: str,
           ref: Optional[Reference], skipped: str, **backbone_kwargs: Any) -> VerifyReport:
    """Loads strictly, then compares with the reference if there is one.

    Args:
        state: Backbone weights in mmregnet's keys.
        arch: The arch to build.
        label: Its name for messages.
        ref: The source library's network with the source weights, or None.
        skipped: Why there is no reference (used when ``ref`` is None).
        **backbone_kwargs: Passed to ``RegNet``.

    Returns:
        The report.

    Raises:
        ConversionError: The strict load fails, or the outputs differ beyond
            float32 rounding (:data:`RTOL`, :data:`ATOL`).
    """
    net = load_strictly(state, arch, label, **backbone_kwargs)
    if ref is None:
        return VerifyReport(label, len(state), skipped=skipped)
    diff, scale = compare_outputs(net, ref)
    if diff > RTOL * scale + ATOL:
        raise ConversionError(f'--verify {label}: outputs differ from {ref.name} by {diff:.3g} '
                              f'(outputs up to {scale:.3g}); the conversion is wrong')
    return VerifyReport(label, len(state), ref.name, None, diff, scale)
