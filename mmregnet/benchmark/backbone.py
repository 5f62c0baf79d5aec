"""Backbone contenders with one set of weights: mmdet's (or mmdet3d's) RegNet and ours.

The reference is mmdet's ``RegNet`` (with the stem) or mmdet3d's
``NoStemRegNet`` (without), built from the same arch numbers and loaded with
our state dict, which has mmdet's keys. RegNetY has no mmdet counterpart
(mmdet's RegNet has no SE units), so its reference is our own eval model.
"""
import copy
import os
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..arch import get_arch
from ..backbone_configs import bev_layout
from ..complexity import complexity
from ..deploy.onnx_export import export_onnx, trace
from ..models import RegNet

Shape = Tuple[int, int, int, int]


@dataclass(frozen=True)
class BackboneCase:
    """One benchmarked configuration.

    Attributes:
        arch: Preset name or arch dict accepted by :func:`mmregnet.arch.get_arch`.
        input_shape: ``(N, C, H, W)``.
        with_stem: With the stem (images) or without (PointPillars pseudo image,
            stage strides ``(1, 2, 2, 2)``, outputs of stages 1-3).
    """

    arch: str
    input_shape: Shape
    with_stem: bool = True

    def __post_init__(self) -> None:
        get_arch(self.arch)
        if len(self.input_shape) != 4 or not all(int(s) >= 1 for s in self.input_shape):
            raise ValueError(f'input_shape must be 4 positive sizes (N, C, H, W), '
                             f'got {self.input_shape}')

    def regnet_kwargs(self) -> Dict:
        """Our :class:`RegNet`'s arguments for this case."""
        if self.with_stem:
            return dict(in_channels=self.input_shape[1])
        return bev_layout(in_channels=self.input_shape[1])

    def flops(self) -> int:
        """Multiply-adds of one forward of the whole batch."""
        kw = self.regnet_kwargs()
        per_item = complexity(self.arch, input_size=self.input_shape[2:], num_classes=None,
                              in_channels=kw['in_channels'], with_stem=self.with_stem,
                              strides=kw.get('strides'))['flops']
        return per_item * self.input_shape[0]

    def params(self) -> int:
        """Parameters of the backbone."""
        return sum(p.numel() for p in build_ours(self).parameters())


def randomize_norms(module: nn.Module, seed: int = 0) -> nn.Module:
    """Gives every BatchNorm of ``module`` random statistics and affine terms, in place; returns
    it. Fresh norms are identities, which would make folding them trivially right."""
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


def build_ours(case: BackboneCase, seed: int = 0, **overrides) -> RegNet:
    """Our backbone for ``case`` with seeded random weights and norms.

    Args:
        case: The configuration.
        seed: Seed of the weights.
        **overrides: Extra :class:`RegNet` arguments (``with_cp=True``...).

    Returns:
        The backbone in train mode, on the CPU.
    """
    torch.manual_seed(seed)
    net = RegNet(case.arch, zero_init_residual=False, **case.regnet_kwargs(), **overrides)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
    return randomize_norms(net, seed)


def build_reference(ours: RegNet, **overrides) -> Optional[nn.Module]:
    """mmdet's / mmdet3d's RegNet with ``ours``'s arch and weights, or None for RegNetY.

    Args:
        ours: Our backbone (with or without stem).
        **overrides: Extra arguments (``with_cp=True``...).

    Returns:
        The reference in train mode, or None if mmdet has no such network.
    """
    if ours.arch.se_ratio:
        return None
    kwargs = dict(out_indices=ours.out_indices, strides=ours.strides,
                  dilations=ours.dilations, zero_init_residual=False, **overrides)
    if ours.with_stem:
        from mmdet.models.backbones import RegNet as MMDetRegNet  # lazy: an extra
        ref = MMDetRegNet(ours.arch.to_dict(), in_channels=ours.in_channels,
                          stem_channels=ours.conv1.out_channels, **kwargs)
    else:
        from mmdet3d.models.backbones import NoStemRegNet  # lazy: an extra
        ref = NoStemRegNet(ours.arch.to_dict(), stem_channels=ours.in_channels,
                           base_channels=ours.in_channels, **kwargs)
    ref.load_state_dict(ours.state_dict(), strict=True)
    return ref


def relative_error(expected: Sequence[torch.Tensor], actual: Sequence[torch.Tensor]) -> float:
    """Largest ``max|a - e| / max|e|`` over paired outputs (float32 comparison).

    Args:
        expected: Reference outputs.
        actual: Outputs to check, same shapes.

    Returns:
        The worst relative error.
    """
    if len(expected) != len(actual):
        raise ValueError(f'{len(expected)} expected outputs but {len(actual)} actual ones')
    return max(((e.float() - a.float()).abs().max() / e.float().abs().max().clamp_min(1e-12))
               .item() for e, a in zip(expected, actual))


class OnnxModule:
    """An ONNX Runtime session called like a module: a tensor in, a tuple of tensors out.

    Args:
        path: The ``.onnx`` file (one input named ``input``).
        device: ``'cpu'`` or ``'cuda[:i]'`` (the CUDA provider, if onnxruntime has it).
    """

    def __init__(self, path: str, device: str = 'cpu') -> None:
        import onnxruntime as ort  # lazy: the deploy extra
        providers = ['CPUExecutionProvider']
        if device.startswith('cuda'):
            providers.insert(0, 'CUDAExecutionProvider')
        self.session = ort.InferenceSession(path, providers=providers)

    def __call__(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        outs = self.session.run(None, {'input': x.detach().cpu().numpy()})
        return tuple(torch.from_numpy(o) for o in outs)


def inference_contenders(case: BackboneCase, device: str = 'cpu',
                         onnx_dir: Optional[str] = None) -> Dict[str, nn.Module]:
    """The eval-mode models to race, all with the same weights.

    Args:
        case: The configuration.
        device: Where they run.
        onnx_dir: A folder for the ONNX file; with it, ``onnxruntime`` races too.

    Returns:
        ``reference`` (mmdet's RegNet; for RegNetY our eval model), ``eval``
        (ours, unchanged), ``deploy`` (ours after ``switch_to_deploy``) and
        ``onnxruntime`` (ours exported, on ONNX Runtime).
    """
    ours = build_ours(case).eval()
    ref = build_reference(ours) or copy.deepcopy(ours)
    ref.eval()  # mmdet's ResNet.train() returns None: no chaining
    models = dict(reference=ref.to(device), eval=ours.to(device),
                  deploy=copy.deepcopy(ours).switch_to_deploy())
    if onnx_dir is not None:
        x = torch.randn(case.input_shape)
        path = export_onnx(copy.deepcopy(ours).switch_to_deploy().cpu(), x,
                           os.path.join(onnx_dir, 'backbone.onnx'))
        models['onnxruntime'] = OnnxModule(path, device)
    return models


def compiled_contenders(models: Dict[str, nn.Module], example: torch.Tensor, jit: bool = False,
                        compile: bool = False) -> Dict[str, nn.Module]:
    """Traced or compiled models, for a race of their own.

    Args:
        models: :func:`inference_contenders`' models (``reference``, ``deploy``).
        example: An input to trace with.
        jit: Add ``deploy+jit``: the deployed model traced and frozen
            (TorchScript's oneDNN fusions).
        compile: Add ``reference+compile``: mmdet's model under
            ``torch.compile`` with inductor's freezing (what a user would
            try first; run it under ``torch.no_grad``).

    Returns:
        Name to model, only the ones asked for.
    """
    out = {}
    if jit:
        with torch.no_grad():
            out['deploy+jit'] = torch.jit.freeze(trace(models['deploy'], example))
    if compile:
        # Freezing lets inductor prepack the conv weights for oneDNN and fuse the
        # ReLUs and residual adds into the convs (inference only).
        out['reference+compile'] = torch.compile(copy.deepcopy(models['reference']),
                                                 options={'freezing': True})
    return out


def training_contenders(case: BackboneCase, device: str = 'cpu',
                        with_cp: bool = False) -> Dict[str, Tuple[nn.Module, torch.memory_format]]:
    """The train-mode models to race and the memory format each is fed.

    Args:
        case: The configuration.
        device: Where they run.
        with_cp: Build them with activation checkpointing.

    Returns:
        ``reference`` (mmdet's; ours for RegNetY), ``train`` (ours) and
        ``train+channels_last`` (ours, weights and input channels-last).
    """
    ours = build_ours(case, with_cp=with_cp)
    ref = build_reference(ours, with_cp=with_cp) or copy.deepcopy(ours)
    cl = copy.deepcopy(ours).to(device, memory_format=torch.channels_last)
    fmt = torch.contiguous_format
    return dict(reference=(ref.to(device), fmt), train=(ours.to(device), fmt),
                **{'train+channels_last': (cl, torch.channels_last)})


def training_step(model: nn.Module, x: torch.Tensor, lr: float = 1e-4) -> Callable[[], float]:
    """A closure that runs one SGD step (forward, loss, backward, update) and returns the loss.

    Args:
        model: A backbone in train mode.
        x: The batch, already in the wanted memory format.
        lr: Step size (small: the weights should stay sane over many steps).

    Returns:
        The step function.
    """
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        loss = sum(o.float().square().mean() for o in model(x))
        loss.backward()
        opt.step()
        return float(loss.detach())
    return step
