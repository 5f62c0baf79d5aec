"""The conversion as one call: find the weights, rename them, name their arch, adapt, verify.

:func:`convert_checkpoint` works on a loaded checkpoint and returns the result
in memory; :func:`convert_file` adds the safe reading, the hashing and the
atomic writing around it. Nothing is written before every check has passed.
"""
import os
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple, Union

from torch import Tensor

from .. import __version__
from ..arch import ArchLike
from ..backbone_configs import (bev_backbone, config_text, image_backbone, stage_channels,
                                value_text)
from ..checkpoint.arch_inference import ArchMatch, resolve_arch
from ..checkpoint.errors import ConversionError
from ..checkpoint.loading import check_source_file, load_checkpoint
from ..checkpoint.shapes import ObservedArch, fill_batch_counters, read_arch
from .containers import extract
from .layouts import map_state_dict
from .library_models import build_reference
from .safe_io import check_destination, file_sha256, save_checkpoint
from .stemless import adapt_to_stemless, check_target
from .verify import VerifyReport, verify as run_verify

Verify = Union[bool, ArchLike]
#: ``meta['keys']`` of a checkpoint with the classifier kept: mmpretrain's ``ImageClassifier``
#: keys (``backbone.*`` and its ``LinearClsHead``'s ``head.fc.*``); otherwise ``'backbone'``.
CLASSIFIER_KEYS = 'ImageClassifier'


@dataclass(frozen=True)
class ConversionResult:
    """A converted checkpoint and what was done to get it.

    Attributes:
        checkpoint: ``{'state_dict': ..., 'meta': ...}``, ready for ``torch.save``.
        arch: The arch the weights match.
        observed: The structure read off the weights.
        backbone: The ``RegNet`` arguments besides ``arch`` that the weights need.
        notes: Human-readable lines: the state taken, what was added, adapted,
            dropped or ignored.
        verify: The ``--verify`` report, if verification ran.
    """

    checkpoint: Dict[str, Any]
    arch: ArchMatch
    observed: ObservedArch
    backbone: Dict[str, Any]
    notes: Tuple[str, ...]
    verify: Optional[VerifyReport]

    def config_snippet(self, checkpoint_path: str) -> str:
        """The config that loads the result, ready to paste into a ``model=dict(...)``.

        Stem-less weights give PointPillars' ``pts_backbone`` (mmdet3d's settings,
        :func:`~mmregnet.backbone_configs.bev_backbone`), others mmdet's ``backbone``
        (:func:`~mmregnet.backbone_configs.image_backbone`), each with a
        ``Pretrained`` init of the file; with the classifier kept, an mmpretrain
        ``ImageClassifier`` (``model = dict(...)``).
        """
        value = self.arch.config_value()
        arch = value if isinstance(value, str) else dict(value)
        init = dict(type='Pretrained', checkpoint=checkpoint_path)
        if self.checkpoint['meta']['keys'] != CLASSIFIER_KEYS:
            if self.backbone.get('with_stem', True):
                return config_text('backbone', image_backbone(arch, **self.backbone,
                                                              init_cfg=init)).rstrip()
            kwargs = {k: v for k, v in self.backbone.items() if k != 'with_stem'}
            cfg = bev_backbone(arch, **kwargs, init_cfg=init)
            neck = dict(in_channels=stage_channels(arch, cfg['out_indices']))
            return (config_text('pts_backbone', cfg) + config_text('pts_neck', neck)).rstrip()
        classes, width = self.checkpoint['state_dict']['head.fc.weight'].shape
        last = (len(self.observed.widths) - 1,)
        backbone = dict(type='mmregnet.RegNet', arch=arch, **self.backbone, out_indices=last)
        return '\n'.join([
            'model = dict(', "    type='ImageClassifier',",
            f'    backbone={value_text(backbone)},',
            "    neck=dict(type='GlobalAveragePooling'),",
            f"    head=dict(type='LinearClsHead', num_classes={classes}, in_channels={width}),",
            f'    init_cfg={value_text(init)})'])


def _compact(t: Tensor) -> Tensor:
    # A view into a larger storage (a flat buffer) would save the whole buffer; copy just it.
    if t.untyped_storage().nbytes() != t.numel() * t.element_size():
        return t.clone()
    return t


def _backbone_kwargs(observed: ObservedArch, stemless_in_channels: Optional[int],
                     strides: Optional[Sequence[int]]) -> Dict[str, Any]:
    if stemless_in_channels is not None:
        kwargs: Dict[str, Any] = dict(in_channels=stemless_in_channels, with_stem=False)
    elif observed.stem_channels is None:
        kwargs = dict(in_channels=observed.in_channels, with_stem=False)
    else:
        kwargs = dict(in_channels=observed.in_channels, stem_channels=observed.stem_channels)
    if strides is None and stemless_in_channels is None:
        # Only a stage that keeps its width at stride 1 lacks a projection.
        strides = tuple(2 if p else 1 for p in observed.projections)
    if strides is not None and any(s != 2 for s in strides):
        kwargs['strides'] = tuple(strides)
        if strides[0] == 1:  # RegNet asks a stem before a stride-1 stage to be said
            kwargs.setdefault('with_stem', True)
    defaults = dict(in_channels=3, stem_channels=32)
    return {k: v for k, v in kwargs.items() if defaults.get(k) != v}


def convert_checkpoint(ckpt: Any, *, src_format: Optional[str] = None,
                       arch: Optional[ArchLike] = None, keep_head: bool = False,
                       state: str = 'auto', prefix: Optional[str] = None,
                       stemless_in_channels: Optional[int] = None,
                       strides: Optional[Sequence[int]] = None, verify: Verify = False,
                       source_file: str = '', source_sha256: str = '',
                       allow_nonfinite: bool = False) -> ConversionResult:
    """Converts a loaded pycls, timm, torchvision, mmdet or mmpretrain checkpoint to our keys.

    Args:
        ckpt: The loaded checkpoint (see :func:`~mmregnet.checkpoint.loading.load_checkpoint`).
        src_format: Force the source layout instead of detecting it.
        arch: A preset name or arch dict the weights must match; None infers it.
        keep_head: Keep the classifier: the result then has mmpretrain
            ``ImageClassifier`` keys, ``backbone.*`` and ``head.fc.*``.
        state: ``'auto'``, ``'model'`` or ``'ema'`` for checkpoints with EMA weights.
        prefix: The backbone's module prefix in a detector checkpoint (detected if None).
        stemless_in_channels: Fit the weights to a stem-less backbone with this
            many input channels (see :mod:`~mmregnet.convert.stemless`).
        strides: Stage strides of the target backbone.
        verify: False; True to verify against the matched arch; or an arch to verify against.
        source_file: Recorded in the meta.
        source_sha256: Recorded in the meta.
        allow_nonfinite: Convert weights with NaN or infinite values (refused by default).

    Returns:
        The result; nothing is written.

    Raises:
        ConversionError: Anything that keeps the weights from loading exactly.
    """
    check_target(stemless_in_channels, strides)
    found = extract(ckpt, src_format, state, prefix, allow_nonfinite)
    mapped = map_state_dict(found.state, found.layout)
    if keep_head and not mapped.head:
        raise ConversionError(f'--keep-head: the {found.layout.name} weights have no '
                              'classifier to keep (drop --keep-head)')
    backbone, added = fill_batch_counters(mapped.backbone)
    observed = read_arch(backbone)
    check_target(stemless_in_channels, strides, len(observed.widths))
    match = resolve_arch(observed, arch)
    kwargs = _backbone_kwargs(observed, stemless_in_channels, strides)
    notes = [f'source: {found.layout.name} weights, {found.source_state}'
             + (f', under {found.prefix!r}' if found.prefix else '')]
    notes += [f'ignored: {item}' for item in found.ignored]
    if added:
        notes.append(f'added {len(added)} BN num_batches_tracked counters (0) the source lacked')
    changes: Dict[str, Tuple[str, ...]] = dict(added=added, adapted=(), dropped=())
    if stemless_in_channels is not None:
        fitted = adapt_to_stemless(backbone, match.spec, stemless_in_channels, strides)
        backbone = fitted.state
        changes.update(adapted=fitted.adapted, dropped=fitted.dropped)
        notes += [f'adapted: {a}' for a in fitted.adapted]
        notes += [f'dropped: {d}' for d in fitted.dropped]
    report = None
    if verify is not False:
        ref, skipped = None, 'the stem-less adaptation changes the first block'
        if stemless_in_channels is None:
            ref, skipped = build_reference(found.layout, match.spec, observed,
                                           kwargs.get('strides', (2,) * len(observed.widths)),
                                           found.state)
        target, label = _verify_target(verify, match)
        report = run_verify(backbone, target, label, ref, skipped, **kwargs)
    state_dict = {k: _compact(v) for k, v in backbone.items()}
    head = 'kept' if keep_head else 'dropped' if mapped.head else 'absent'
    if keep_head:
        state_dict = {f'backbone.{k}': v for k, v in state_dict.items()}
        state_dict.update({f'head.{k}': _compact(v) for k, v in mapped.head.items()})
        notes.append("classifier head: kept; keys backbone.* and head.fc.*, as in mmpretrain's "
                     'ImageClassifier with a GlobalAveragePooling neck and a LinearClsHead')
    else:
        notes.append(f'classifier head: {head}')
    meta = dict(
        converter='mmregnet.convert', mmregnet_version=__version__,
        source=dict(file=source_file, sha256=source_sha256, format=found.layout.name,
                    state=found.source_state, prefix=found.prefix, ignored=list(found.ignored),
                    input_channel_order=found.layout.channel_order),
        arch=match.config_value(), preset=match.name, arch_dict=match.spec.to_dict(),
        stages=dict(widths=list(observed.widths), depths=list(observed.depths),
                    group_widths=list(observed.group_widths)),
        backbone=dict(kwargs), head=head, keys=CLASSIFIER_KEYS if keep_head else 'backbone',
        verify=report.to_meta() if report else None,
        **{k: list(v) for k, v in changes.items()})
    return ConversionResult(dict(state_dict=state_dict, meta=meta), match, observed,
                            kwargs, tuple(notes), report)


def _verify_target(verify: Verify, match: ArchMatch) -> Tuple[ArchLike, str]:
    # --verify alone checks the matched arch; --verify-arch ARCH checks the one given.
    if verify is True:
        return match.spec, match.name or 'the inferred arch dict'
    return verify, verify if isinstance(verify, str) else 'the given arch'


def convert_file(src: str, dst: str, *, force: bool = False, **options: Any) -> ConversionResult:
    """Reads ``src`` safely, converts it and writes ``dst`` atomically.

    Args:
        src: The source checkpoint (``.pth``, ``.pyth``, ``.safetensors``).
        dst: The output path; never the source; replaced only with ``force``.
        force: Replace an existing ``dst``.
        **options: Passed to :func:`convert_checkpoint`.

    Returns:
        The result, already written to ``dst``.

    Raises:
        ConversionError: Bad input of any kind; ``dst`` is then untouched.
    """
    check_source_file(src)
    check_destination(src, dst, force)
    ckpt = load_checkpoint(src)
    result = convert_checkpoint(ckpt, source_file=os.path.basename(src),
                                source_sha256=file_sha256(src), **options)
    save_checkpoint(result.checkpoint, dst, force)
    return result


__all__ = ['ConversionError', 'ConversionResult', 'convert_checkpoint', 'convert_file']
