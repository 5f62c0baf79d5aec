"""Refusing weights that do not fit the model or are not finite, before they are loaded.

mmengine loads checkpoints with ``strict=False``: a tensor of the wrong shape
is skipped with a warning and the layer keeps its random initialisation, so
a checkpoint of another arch is evaluated (or fine-tuned) with most of the
backbone random while the numbers look real. :func:`check_checkpoint_fits`
compares a checkpoint with the built model first and refuses a mismatch,
naming the arch each RegNet backbone in the checkpoint holds (read off its
shapes, as the converter does) and the arch the config builds; NaN or
infinite weights are refused too. ``allow_partial`` (``--allow-partial``,
or ``allow_partial=True`` in a backbone's ``Pretrained`` init_cfg) is the way
to load only the tensors that fit, on purpose.

The checkpoint is read by :func:`mmregnet.checkpoint.loading.load_checkpoint`:
weights only, the project's one unpickling allow-list, sizes checked against
the file. A RegNet is any module carrying an :class:`~mmregnet.arch.ArchSpec`
as ``arch``, so this layer needs no model class.
"""
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor, nn

from ..arch import ArchSpec, arch_name
from ..errors import InputError
from .arch_inference import resolve_arch
from .errors import ConversionError
from .loading import load_checkpoint
from .shapes import fill_batch_counters, read_arch

_EXAMPLES = 2


def checkpoint_state(path: str) -> Dict[str, Tensor]:
    """The model weights in a checkpoint file, keyed as mmengine loads them.

    Args:
        path: A checkpoint (an mmengine ``{'state_dict': ...}`` or a bare state dict).

    Returns:
        ``{key: tensor}`` without a DataParallel ``module.`` prefix.

    Raises:
        InputError: An unreadable or refused file, or one without a state dict.
    """
    ckpt = load_checkpoint(path)
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, Mapping) else None
    if not isinstance(state, Mapping) or not state or not all(
            isinstance(v, Tensor) for v in state.values()):
        raise InputError(f'checkpoint {path} holds no state dict (name -> tensor)')
    return {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}


def _nonfinite(t: Tensor) -> int:
    try:
        # A NaN or an infinity makes the sum non-finite: one pass without a mask for the
        # usual all-finite tensor; only a non-finite sum (or an overflow) is counted exactly.
        if bool(torch.isfinite(t.sum())):
            return 0
        return int((~torch.isfinite(t)).sum())
    except (RuntimeError, NotImplementedError):  # float8 has no isfinite on every backend
        return int((~torch.isfinite(t.float())).sum())


def check_finite(state: Mapping[str, Tensor], allow: bool = False) -> List[str]:
    """Refuses weights with NaN or infinite values (which make every output NaN).

    Args:
        state: Tensors to check (integer ones and shape-only meta ones are skipped).
        allow: Report instead of refusing (``--allow-nonfinite``).

    Returns:
        One line per tensor with non-finite values (empty when all are finite).

    Raises:
        ConversionError: Some tensor holds a NaN or an infinity and ``allow`` is False.
    """
    found = []
    for key, t in state.items():
        if (t.is_floating_point() or t.is_complex()) and not t.is_meta:  # meta: shapes only
            bad = _nonfinite(t)
            if bad:
                found.append(f'{key} ({bad} of {t.numel()} values are NaN or infinite)')
    if found and not allow:
        more = f' and {len(found) - 3} more tensors' if len(found) > 3 else ''
        raise ConversionError(f'non-finite weights: {"; ".join(found[:3])}{more}; such weights '
                              'give NaN outputs (pass --allow-nonfinite to use them anyway)')
    return found


def describe_regnet(state: Mapping[str, Tensor]) -> str:
    """The arch that RegNet weights (mmdet keys, no prefix) hold: a preset name or a dict.

    Args:
        state: A backbone's tensors.

    Returns:
        ``'regnetx_1.6gf'``, an arch dict as text, or why the weights are no RegNet.
    """
    try:
        match = resolve_arch(read_arch(fill_batch_counters(dict(state))[0]), None)
    except ValueError as e:
        return f'no RegNet ({e})'
    return match.name or str(match.spec.to_dict())


def _regnets(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    return [(name + '.' if name else '', m) for name, m in model.named_modules()
            if isinstance(getattr(m, 'arch', None), ArchSpec)]


def _backbone_lines(model: nn.Module, state: Mapping[str, Tensor],
                    bad: List[str]) -> List[str]:
    lines = []
    for prefix, net in _regnets(model):
        if not any(k.startswith(prefix) for k in bad):
            continue
        sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        held = describe_regnet(sub) if sub else f'no {prefix}* weights'
        built = arch_name(net.arch) or str(net.arch.to_dict())
        whose = f'its {prefix[:-1]} is' if prefix else 'the weights are'
        lines.append(f'{whose} {held}, but the config builds {built}')
    return lines


def fit_problems(model: nn.Module, state: Mapping[str, Tensor],
                 ignore_unexpected: bool = False) -> Optional[str]:
    """What keeps ``state`` from loading into ``model`` exactly, or None if it fits.

    Args:
        model: The built model (a wrapper's ``.module`` is used).
        state: The checkpoint's weights.
        ignore_unexpected: Do not count checkpoint tensors the model lacks
            (a backbone's Pretrained init from a classifier keeps its head).

    Returns:
        One sentence: the archs of mismatching RegNet backbones, then the
        counts of mismatching, missing and unexpected tensors with examples.
    """
    model = getattr(model, 'module', model)
    own = model.state_dict()
    shape = [k for k in own if k in state and state[k].shape != own[k].shape]
    missing = [k for k in own if k not in state]
    unexpected = [] if ignore_unexpected else [k for k in state if k not in own]
    if not (shape or missing or unexpected):
        return None
    parts = _backbone_lines(model, state, shape + missing)
    if shape:
        k = shape[0]
        parts.append(f'{len(shape)} of {len(own)} tensors differ in shape (e.g. {k!r}: '
                     f'{tuple(state[k].shape)} in the checkpoint, {tuple(own[k].shape)} '
                     'in the model)')
    for keys, what in ((missing, 'are missing'), (unexpected, 'are not in the model')):
        if keys:
            parts.append(f'{len(keys)} {what} (e.g. {", ".join(map(repr, keys[:_EXAMPLES]))})')
    return '; '.join(parts)


def check_state_fits(model: nn.Module, state: Mapping[str, Tensor], source: str,
                     allow_partial: bool = False, allow_nonfinite: bool = False,
                     ignore_unexpected: bool = False) -> List[str]:
    """Refuses weights that do not fit ``model`` or are not finite.

    Args:
        model: The built model.
        state: The weights.
        source: The checkpoint's path, for messages.
        allow_partial: Return the problem instead of refusing.
        allow_nonfinite: Accept NaN or infinite values.
        ignore_unexpected: See :func:`fit_problems`.

    Returns:
        Lines describing what was allowed (empty when everything fits).

    Raises:
        InputError: A mismatch without ``allow_partial``, or non-finite
            values without ``allow_nonfinite``.
    """
    notes = [f'non-finite weights (allowed): {line}'
             for line in _finite_lines(state, source, allow_nonfinite)]
    problem = fit_problems(model, state, ignore_unexpected)
    if problem and not allow_partial:
        raise InputError(f'checkpoint {source} does not fit the model: {problem}; pass '
                         '--allow-partial (or allow_partial=True in a Pretrained init_cfg) '
                         'to load only the tensors that fit')
    if problem:
        notes.append(f'loading only the tensors that fit (allowed): {problem}')
    return notes


def _finite_lines(state: Mapping[str, Tensor], source: str, allow: bool) -> List[str]:
    try:
        return check_finite(state, allow)
    except ValueError as e:
        raise InputError(f'checkpoint {source}: {e}') from None


def check_checkpoint_fits(model: nn.Module, path: str, allow_partial: bool = False,
                          allow_nonfinite: bool = False) -> List[str]:
    """Refuses a checkpoint file that does not fit ``model`` (see the module doc).

    Args:
        model: The model the Runner built.
        path: The checkpoint file (``load_from`` or ``--resume``).
        allow_partial: Load only what fits instead of refusing.
        allow_nonfinite: Accept NaN or infinite values.

    Returns:
        Lines describing what was allowed.

    Raises:
        InputError: As :func:`check_state_fits`, or an unreadable checkpoint.
    """
    if not os.path.isfile(path):
        raise InputError(f'checkpoint {path} does not exist')
    return check_state_fits(model, checkpoint_state(path), path, allow_partial,
                            allow_nonfinite)


def check_pretrained(backbone: nn.Module, init_cfg: Dict[str, Any],
                     allow_partial: bool = False, allow_nonfinite: bool = False) -> List[str]:
    """Checks a backbone's ``Pretrained`` init checkpoint before mmengine loads it.

    Only local files are read: an ``open-mmlab://`` name is checked against the
    arch when the RegNet is built (``mmregnet.models.arguments.check_open_mmlab_arch``),
    URLs are left to mmengine; ``prefix`` selects the backbone's keys as mmengine does.
    Tensors the backbone lacks (a classifier's head) are ignored.

    Args:
        backbone: The backbone, built.
        init_cfg: ``dict(type='Pretrained', checkpoint=..., prefix=...)``.
        allow_partial: Load only what fits instead of refusing.
        allow_nonfinite: Accept NaN or infinite values.

    Returns:
        Lines describing what was allowed.

    Raises:
        InputError: As :func:`check_state_fits`.
    """
    path = init_cfg.get('checkpoint')
    if not isinstance(path, str) or not os.path.isfile(path):
        return []
    full = checkpoint_state(path)
    prefix = init_cfg.get('prefix')
    state = full
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        state = {k[len(prefix):]: v for k, v in full.items() if k.startswith(prefix)}
    try:
        return check_state_fits(backbone, state, path, allow_partial, allow_nonfinite,
                                ignore_unexpected=True)
    except InputError as e:
        hint = _prefix_hint(backbone, full, prefix)
        if hint is None:
            raise
        raise InputError(f'{e}; {hint}') from None


def _prefix_hint(backbone: nn.Module, state: Mapping[str, Tensor],
                 prefix: Optional[str]) -> Optional[str]:
    """Where the backbone's weights are in a checkpoint, if under another prefix."""
    own = list(backbone.state_dict())
    heads = {k[:-len(own[0])] for k in state if k.endswith(own[0])}
    for head in sorted(heads):
        if head != (prefix or '') and all(head + k in state for k in own):
            return (f'the checkpoint holds these weights under {head!r}: set '
                    f'prefix={head!r} in the init_cfg')
    return None
