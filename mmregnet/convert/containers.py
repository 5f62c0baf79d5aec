"""Finding the RegNet weights inside a checkpoint: which state, which prefix, which layout.

pycls checkpoints hold ``model_state`` (and, from newer pycls, ``ema_state``
with ``test_err``/``ema_err``); mmengine/mmdet ones ``state_dict``, with the
backbone under ``backbone.`` (``pts_backbone.`` in mmdet3d) next to necks and
heads; timm, torchvision and exported weights are bare state dicts.
"""
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from torch import Tensor

from ..checkpoint.errors import ConversionError
from ..checkpoint.fit import check_finite
from .layouts import LAYOUTS, Layout, coverage, detect_layout

_PREFERENCES = ('auto', 'model', 'ema')


@dataclass(frozen=True)
class Extracted:
    """The backbone tensors of a checkpoint and how they were found.

    Attributes:
        state: The source-layout tensors, prefix removed.
        layout: Their layout.
        source_state: Which entry of the checkpoint they came from, and why.
        prefix: The module prefix they had (``''``, ``'backbone.'``...).
        ignored: What else the checkpoint held and was not taken (never dropped silently).
    """

    state: Dict[str, Tensor]
    layout: Layout
    source_state: str
    prefix: str
    ignored: Tuple[str, ...]


def _pycls_state(ckpt: Mapping[str, Any], prefer: str) -> Tuple[str, str]:
    # pycls's own load_checkpoint: the lower error wins, ties and missing errors go to model_state.
    test_err, ema_err = ckpt.get('test_err', 100), ckpt.get('ema_err', 100)
    has_ema = 'ema_state' in ckpt
    if prefer == 'ema' or (prefer == 'auto' and has_ema and ema_err < test_err):
        if not has_ema:
            raise ConversionError('--state ema was asked for, but the checkpoint has no ema_state '
                                  f'(it has: {", ".join(map(str, ckpt))})')
        return 'ema_state', f'ema_state (ema_err {ema_err} < test_err {test_err})' \
            if prefer == 'auto' else 'ema_state (asked for)'
    if not has_ema:
        return 'model_state', 'model_state (no ema_state in the checkpoint)'
    why = 'asked for' if prefer == 'model' else f'test_err {test_err} <= ema_err {ema_err}'
    return 'model_state', f'model_state ({why})'


def pick_state(ckpt: Any, prefer: str = 'auto') -> Tuple[Mapping[str, Any], str, List[str]]:
    """Chooses the weights entry of a checkpoint.

    Args:
        ckpt: What :func:`~mmregnet.checkpoint.loading.load_checkpoint` returned.
        prefer: ``'auto'`` (pycls's rule: the lower of ``test_err`` and
            ``ema_err``), ``'model'`` or ``'ema'``.

    Returns:
        The state dict, a description of the choice, and the other top-level
        entries (ignored).

    Raises:
        ConversionError: Not a dict, or no EMA weights when ``prefer='ema'``.
    """
    if prefer not in _PREFERENCES:
        raise ConversionError(f'state preference must be one of {_PREFERENCES}, got {prefer!r}')
    if not isinstance(ckpt, Mapping):
        raise ConversionError(f'the checkpoint holds a {type(ckpt).__name__}; expected a state '
                              'dict (name -> tensor) or a checkpoint dict holding one')
    if 'model_state' in ckpt:
        name, why = _pycls_state(ckpt, prefer)
    elif isinstance(ckpt.get('state_dict'), Mapping):
        name = 'state_dict_ema' if prefer == 'ema' and 'state_dict_ema' in ckpt else 'state_dict'
        if prefer == 'ema' and name != 'state_dict_ema':
            raise ConversionError('--state ema was asked for, but the checkpoint has no EMA '
                                  'weights')
        why = name
    elif isinstance(ckpt.get('model'), Mapping):
        name, why = 'model', 'model'
    else:
        name, why = '', 'the whole file (a bare state dict)'
    if prefer == 'ema' and 'ema' not in name:
        raise ConversionError(f'--state ema was asked for, but the checkpoint has no EMA weights '
                              f'(its weights are {why})')
    if not name:
        return ckpt, why, []
    return ckpt[name], why, [str(k) for k in ckpt if k != name]


def _type_name(value: Any) -> str:
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == 'builtins' else \
        f'{kind.__module__}.{kind.__qualname__}'


def _check_tensors(state: Mapping[str, Any]) -> Dict[str, Tensor]:
    if not state:
        raise ConversionError('the checkpoint holds an empty state dict')
    for key, value in state.items():
        if not isinstance(value, Tensor):
            raise ConversionError(f'not a state dict: entry {key!r} holds a '
                                  f'{_type_name(value)}, expected tensors only')
    return dict(state)


def _strip(state: Mapping[str, Tensor], prefix: str) -> Dict[str, Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _candidates(state: Dict[str, Tensor],
                layout: Optional[Layout]) -> List[Tuple[str, Layout, bool]]:
    prefixes = [''] + sorted({k.split('.', 1)[0] + '.' for k in state if '.' in k})
    found = []
    for prefix in prefixes:
        sub = list(_strip(state, prefix))
        chosen = layout or detect_layout(sub)
        if chosen is not None:
            blocks, mapped = coverage(sub, chosen)
            if blocks:
                found.append((prefix, chosen, mapped == len(sub)))
    return found


def _choose(state: Dict[str, Tensor], layout: Optional[Layout],
            prefix: Optional[str]) -> Tuple[str, Layout]:
    if prefix is not None:
        prefix = prefix.rstrip('.') + '.' if prefix else ''
        found = [c for c in _candidates(state, layout) if c[0] == prefix]
        if not found:
            raise ConversionError(f'no RegNet keys under the prefix {prefix!r}')
        return found[0][:2]
    found = _candidates(state, layout)
    if not found:
        examples = ', '.join(repr(k) for k in list(state)[:3])
        wanted = ', '.join(f'{lay.example!r} ({lay.name})' for lay in LAYOUTS.values())
        raise ConversionError(f'no RegNet in the checkpoint: expected keys like {wanted}; '
                              f'got {examples}, ...')
    complete = [c for c in found if c[2]]
    if not complete:  # map_state_dict will name the keys that do not fit
        return found[0][:2]
    if complete[0][0] == '':  # the whole file is one RegNet
        return complete[0][:2]
    if len(complete) > 1:
        raise ConversionError('the checkpoint holds several RegNet backbones ('
                              + ', '.join(c[0] for c in complete) + '); choose one with --prefix')
    return complete[0][:2]


def extract(ckpt: Any, src_format: Optional[str] = None, prefer: str = 'auto',
            prefix: Optional[str] = None, allow_nonfinite: bool = False) -> Extracted:
    """Finds the RegNet backbone in a loaded checkpoint.

    Args:
        ckpt: The loaded checkpoint.
        src_format: Force a layout (``pycls``, ``timm``, ``torchvision``,
            ``mmdet``) instead of detecting it from the keys.
        prefer: Which state of a checkpoint with EMA weights (see :func:`pick_state`).
        prefix: Take only keys under this module prefix (``'backbone'``...);
            by default the prefix is detected.
        allow_nonfinite: Take weights with NaN or infinite values (refused
            by default, see :func:`check_finite`; then listed in ``ignored``).

    Returns:
        The backbone tensors in their source layout.

    Raises:
        ConversionError: No RegNet in the checkpoint, several candidate
            backbones, non-finite weights, or an unknown ``src_format``.
    """
    if src_format is not None and src_format not in LAYOUTS:
        raise ConversionError(f'unknown source format {src_format!r}; expected one of: '
                              + ', '.join(LAYOUTS))
    raw, source_state, ignored = pick_state(ckpt, prefer)
    state = _check_tensors(raw)
    if all(k.startswith('module.') for k in state):  # saved from a DataParallel wrapper
        state = _strip(state, 'module.')
    prefix, layout = _choose(state, LAYOUTS[src_format] if src_format else None, prefix)
    # An mmpretrain ImageClassifier: its LinearClsHead's classifier sits beside the backbone.
    head = {f'head.fc.{leaf}': f'fc.{leaf}' for leaf in ('weight', 'bias')
            if prefix == 'backbone.' and layout.name == 'mmdet' and f'head.fc.{leaf}' in state}
    others: Dict[str, int] = {}
    for key in state:
        if not key.startswith(prefix) and key not in head:
            top = key.split('.', 1)[0]
            others[top] = others.get(top, 0) + 1
    ignored = ignored + [f'{name}.* ({n} tensors, not the backbone)' for name, n in others.items()]
    backbone = _strip(state, prefix)
    backbone.update({new: state[old] for old, new in head.items()})
    nonfinite = check_finite(backbone, allow_nonfinite)
    ignored += [f'the non-finite check (--allow-nonfinite): {item}' for item in nonfinite]
    return Extracted(backbone, layout, source_state, prefix, tuple(ignored))
