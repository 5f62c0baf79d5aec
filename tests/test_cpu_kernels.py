"""The deployed RegNet's fused oneDNN path: when it runs, and that it keeps every promise.

Equality with the eval model for every preset is in ``test_deploy.py``; here
are the properties that kept buffers and packed weights could break: fresh
outputs, untouched inputs, reloaded or replaced weights, copies, threads,
inference mode, and changing input sizes (a plan per size, the last few kept).
Each runs on both backends: oneDNN's primitives called directly, and
PyTorch's fused op.
"""
import copy
import io
import pickle
import threading

import pytest
import torch

from mmregnet import RegNet
from mmregnet.benchmark.backbone import randomize_norms
from mmregnet.models import cpu_kernels
from mmregnet.models.cpu_kernels import Kernels
from mmregnet.models.deploy import trace

pytestmark = pytest.mark.skipif(not cpu_kernels.available(),
                                reason='this PyTorch has no oneDNN fused convolutions')


@pytest.fixture(params=['onednn', 'torch_op'])
def use_onednn(request):
    return request.param == 'onednn'


def _deployed(use_onednn, arch='regnety_200mf', seed=0, **kwargs):
    """(eval model, its deployed copy with buffers for every activation)."""
    torch.manual_seed(seed)
    net = randomize_norms(RegNet(arch, zero_init_residual=False, **kwargs), seed).eval()
    fast = copy.deepcopy(net).switch_to_deploy()
    fast.cpu_kernels = Kernels(min_buffer_bytes=0, use_onednn=use_onednn)
    assert (fast.cpu_kernels.onednn is not None) == use_onednn
    return net, fast


def _close(expected, actual):
    return all(torch.allclose(e, a, rtol=0, atol=1e-4 * e.abs().max().item())
               for e, a in zip(expected, actual))


def test_applies_only_to_plain_float32_cpu_inference():
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        assert cpu_kernels.applies(x)
        assert not cpu_kernels.applies(x.double())
    with torch.inference_mode():
        assert cpu_kernels.applies(x)
    assert not cpu_kernels.applies(x)  # autograd on


def test_tracing_records_the_plain_modules(use_onednn):
    _, fast = _deployed(use_onednn)
    x = torch.randn(1, 3, 32, 32)
    graph = str(trace(fast, x).inlined_graph)
    assert 'mkldnn::' not in graph and 'aten::_convolution' in graph


def test_identity_shortcut_never_writes_into_the_callers_input(use_onednn):
    # in_channels equal to the first width and stride 1: block 0 adds its input.
    net, fast = _deployed(use_onednn, 'regnetx_400mf', with_stem=False, in_channels=32,
                          strides=(1, 2, 2, 2), out_indices=(0, 1, 2, 3))
    assert fast.layer1[0].downsample is None
    x = torch.randn(1, 32, 16, 16).contiguous(memory_format=torch.channels_last)
    before = x.clone()
    with torch.no_grad():
        expected = net(x)
        first = fast(x)
        kept = [o.clone() for o in first]
        second = fast(torch.randn_like(x))
    assert torch.equal(x, before)
    assert _close(expected, first)
    assert all(torch.equal(k, o) for k, o in zip(kept, first))  # outputs are fresh tensors
    assert all(o.data_ptr() != p.data_ptr() for o, p in zip(first, second))


def _reload(fast, other):
    fast.load_state_dict(other.state_dict())


def _replace_parameters(fast, other):
    for module, twin in zip(fast.modules(), other.modules()):
        if isinstance(module, torch.nn.Conv2d):
            module.weight = torch.nn.Parameter(twin.weight.clone())
            module.bias = torch.nn.Parameter(twin.bias.clone())


@pytest.mark.parametrize('change', [_reload, _replace_parameters])
def test_changed_weights_are_repacked(change, use_onednn):
    _, fast = _deployed(use_onednn, seed=0)
    other_eval, other = _deployed(use_onednn, seed=1)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        fast(x)  # packs and binds the first weights
        change(fast, other)
        assert _close(other_eval(x), fast(x))


def test_copies_and_pickles_rebuild_their_own_state(use_onednn):
    net, fast = _deployed(use_onednn)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = net(x)
        fast(x)
        buf = io.BytesIO()
        torch.save(fast, buf)
        buf.seek(0)
        copies = [copy.deepcopy(fast), pickle.loads(pickle.dumps(fast)),
                  torch.load(buf, weights_only=False)]
        for c in copies:
            assert c.cpu_kernels is not fast.cpu_kernels
            assert c.cpu_kernels.min_buffer_bytes == 0
            assert c.cpu_kernels.use_onednn == use_onednn
            assert _close(expected, c(x))


def test_threads_do_not_share_buffers(use_onednn):
    net, fast = _deployed(use_onednn)
    inputs = [torch.randn(1, 3, 48, 48, generator=torch.Generator().manual_seed(i))
              for i in range(2)]
    with torch.no_grad():
        expected = [net(x) for x in inputs]
    failures = []

    def run(i):
        with torch.no_grad():
            for _ in range(5):
                if not _close(expected[i], fast(inputs[i])):
                    failures.append(i)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def test_inference_mode_then_no_grad_and_changing_sizes(use_onednn):
    net, fast = _deployed(use_onednn)
    small, big = torch.randn(1, 3, 32, 32), torch.randn(2, 3, 48, 40)
    with torch.no_grad():
        expected = {id(small): net(small), id(big): net(big)}
    for x in (small, big, small):
        with torch.inference_mode():
            assert _close(expected[id(x)], fast(x))
        with torch.no_grad():
            assert _close(expected[id(x)], fast(x))


def test_group_norm_keeps_the_plain_modules():
    net = RegNet('regnetx_200mf', norm_cfg=dict(type='GN', num_groups=8)).eval()
    assert net.switch_to_deploy().cpu_kernels is None
    assert cpu_kernels.foldable(RegNet('regnetx_200mf').switch_to_deploy())


def test_conv_output_shape_matches_the_conv():
    conv = torch.nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2)
    x = torch.randn(2, 4, 17, 10)
    assert cpu_kernels.conv_output_shape(conv, x.shape) == tuple(conv(x).shape)


def test_plans_are_kept_for_the_last_few_input_sizes(use_onednn):
    net, fast = _deployed(use_onednn)
    kernels = fast.cpu_kernels
    sizes = [(1, 3, 32 + 8 * i, 32) for i in range(cpu_kernels.MAX_PLANS + 1)]
    with torch.no_grad():
        first = kernels.plan(fast, sizes[0])
        assert kernels.plan(fast, sizes[0]) is first  # bound once per size
        for size in sizes[1:]:
            x = torch.randn(size)
            assert _close(net(x), fast(x))
        # MAX_PLANS newer sizes pushed the first out, with its buffers.
        assert kernels.plan(fast, sizes[0]) is not first
        assert kernels.plan(fast, sizes[-1]) is kernels.plan(fast, sizes[-1])
