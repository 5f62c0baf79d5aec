"""Scale: the largest published RegNet (regnety_32gf, 145 M parameters) converts within 2x its size.

The conversion runs in a child process that reports its resident memory
after the imports and its peak resident memory after converting; the test
asserts on memory, never on time (it prints the time for the record).
"""
import json
import subprocess
import sys

import pytest
import torch
from pycls.models.anynet import AnyNet

from conftest import pycls_anynet_kwargs

pytestmark = pytest.mark.slow  # RegNetY 32GF's full-size weights

# VmHWM (peak RSS) of the child's own address space; ru_maxrss would include the parent's
# memory at fork time.
_CHILD = r'''
import json, sys, time
from mmregnet.convert import convert_file
def kib(field):
    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith(field))
base = kib('VmRSS:')
start = time.perf_counter()
result = convert_file(sys.argv[1], sys.argv[2])
print(json.dumps(dict(base_kib=base, peak_kib=kib('VmHWM:'), seconds=time.perf_counter() - start,
                      arch=result.arch.name)))
'''


def test_regnety_32gf_converts_with_peak_memory_within_twice_its_size(tmp_path):
    with torch.device('meta'):
        shapes = AnyNet(**pycls_anynet_kwargs('regnety_32gf')).state_dict()
    state = {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in shapes.items()}
    src = tmp_path / 'RegNetY-32GF_dds_8gpu.pyth'
    torch.save({'epoch': 100, 'model_state': state}, src)
    size = src.stat().st_size
    assert sum(v.numel() for v in state.values()) > 145_000_000
    del state
    run = subprocess.run([sys.executable, '-c', _CHILD, str(src), str(tmp_path / 'out.pth')],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"regnety_32gf: {size / 2**20:.0f} MiB checkpoint, converted in "
          f"{report['seconds']:.1f} s, peak RSS {report['peak_kib'] / 1024:.0f} MiB "
          f"(after imports {report['base_kib'] / 1024:.0f} MiB)")
    assert report['arch'] == 'regnety_32gf'
    assert (report['peak_kib'] - report['base_kib']) * 1024 <= 2 * size
    assert (tmp_path / 'out.pth').stat().st_size < size  # the classifier is dropped
