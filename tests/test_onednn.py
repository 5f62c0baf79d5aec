"""oneDNN's primitives called directly: each post-op against PyTorch's convs, errors, lifetimes.

The whole network on them is checked against the eval model for every preset
in ``test_deploy.py`` and ``test_cpu_kernels.py``.
"""
import gc
import os

import pytest
import torch
import torch.nn.functional as F

from mmregnet.models import onednn
from mmregnet.models.cpu_kernels import conv_output_shape


@pytest.fixture(scope='module')
def lib():
    found = onednn.library()
    assert found is not None, (
        f'{onednn.LIBRARY} not found: requirements.txt installs it (onednn-cpu-gomp)')
    return found


def test_openmp_runtime_is_torchs(lib):
    # libdnnl needs libgomp.so.1: the one torch loaded must serve, not a second
    # pool of threads from the system's copy. (Wheels that vendor a renamed
    # libgomp, like scikit-learn's, keep theirs to themselves.)
    with open('/proc/self/maps') as maps:
        runtimes = {line.split()[-1] for line in maps
                    if os.path.basename(line.split()[-1]).startswith('libgomp.so')}
    torch_lib = os.path.join(os.path.dirname(torch.__file__), 'lib')
    assert len(runtimes) == 1 and next(iter(runtimes)).startswith(torch_lib), runtimes


# (in channels, out channels, kernel, stride, padding, dilation, groups, bias, input H x W)
CONVS = [(16, 32, 1, 1, 0, 1, 1, True, (9, 7)),
         (32, 32, 3, 1, 1, 1, 2, True, (8, 8)),
         (48, 48, 3, 2, 1, 1, 3, True, (11, 6)),  # odd sizes: floor of the output size
         (16, 24, 3, 2, 2, 2, 1, False, (13, 10)),
         (32, 64, 1, 2, 0, 1, 1, True, (7, 9))]


@pytest.mark.parametrize('post', onednn.POSTS)
@pytest.mark.parametrize('spec', CONVS, ids=lambda s: 'c{}-{}k{}s{}p{}d{}g{}b{}'.format(*s[:8]))
def test_primitive_equals_torch_conv(lib, spec, post):
    cin, cout, k, stride, pad, dil, groups, bias, size = spec
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(cin, cout, k, stride, pad, dil, groups, bias=bias).eval()
    x = torch.randn(2, cin, *size).contiguous(memory_format=torch.channels_last)
    out_shape = conv_output_shape(conv, x.shape)
    other = torch.randn(out_shape).contiguous(memory_format=torch.channels_last)
    primitive = onednn.ConvPrimitive(lib, conv, x.shape, out_shape, post)
    assert 'ref' not in primitive.implementation  # a JIT kernel, not the reference loop
    with torch.no_grad():
        y = conv(x)
        expected = {'none': y, 'relu': F.relu(y), 'sum_relu': F.relu(y + other),
                    'add_relu': F.relu(y + other)}[post]
        out = other.clone() if post == 'sum_relu' else torch.empty_like(other)
        stream = lib.stream()
        try:
            result = primitive(stream, x, out, other if post == 'add_relu' else None)
        finally:
            lib.destroy('stream', stream)
    assert result is out
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_unknown_post_op_is_refused(lib):
    conv = torch.nn.Conv2d(8, 8, 1)
    with pytest.raises(ValueError, match=r"post must be one of .*'relu'.*got 'gelu'"):
        onednn.ConvPrimitive(lib, conv, (1, 8, 4, 4), (1, 8, 4, 4), 'gelu')


def test_a_shape_the_conv_cannot_take_names_the_call(lib):
    conv = torch.nn.Conv2d(8, 8, 3, padding=1)
    with pytest.raises(onednn.OneDnnError,
                       match='dnnl_convolution_forward_primitive_desc_create failed'):
        onednn.ConvPrimitive(lib, conv, (1, 6, 4, 4), (1, 8, 4, 4), 'relu')


def test_handles_are_released_with_the_primitive(lib):
    primitive = onednn.ConvPrimitive(lib, torch.nn.Conv2d(8, 8, 1), (1, 8, 4, 4),
                                     (1, 8, 4, 4), 'relu')
    finalizer = primitive._finalizer
    assert finalizer.alive
    del primitive
    gc.collect()
    assert not finalizer.alive
