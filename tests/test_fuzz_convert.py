"""Fuzzing the converter: every damaged or hostile source is refused with exit status 1.

For each case: one ``regnet2mmdet: error:`` line, nothing written (no output,
no temporary file), the source byte-identical, and no code from the file run
(a pickled ``open(marker, 'w')`` would create the marker). Most cases run
in-process through the CLI's ``main``; the ones that would allocate terabytes
if a size were trusted run in one child process whose address space is capped
at 1 GiB above what torch and the stack need.
"""
import io
import json
import os
import pickle
import resource
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from mmregnet import RegNet
from mmregnet.convert.cli import main

pytestmark = pytest.mark.slow  # fuzzing

REPO = Path(__file__).resolve().parents[1]
#: A small real RegNet (four stages of one block): every case converts or fails in milliseconds.
TINY = dict(w0=8, wa=8.0, wm=1.4, depth=4, group_w=8, bot_mul=1.0)


class RunsCode:
    """Unpickled without weights_only, this would create ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, 'w'))


@pytest.fixture(scope='module')
def real(tmp_path_factory):
    """A real checkpoint (an mmengine-style state dict of a built RegNet) and its conversion."""
    folder = tmp_path_factory.mktemp('real')
    torch.manual_seed(0)
    path = folder / 'real.pth'
    torch.save({'state_dict': RegNet(TINY).state_dict(), 'meta': {'epoch': 3}}, path)
    out = folder / 'converted.pth'
    assert main([str(path), str(out)]) == 0
    converted = torch.load(out, weights_only=True)['state_dict']
    return path, path.read_bytes(), converted


def refused(tmp_path, capsys, data=None, src=None, extra=(), message=''):
    """Writes ``data`` (or uses ``src``), converts it, and checks the refusal contract."""
    if src is None:
        src = tmp_path / 'src.bin'
        src.write_bytes(data)
    before = src.read_bytes()
    out = tmp_path / 'out'
    out.mkdir(exist_ok=True)
    code = main([str(src), str(out / 'dst.pth'), *extra])
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.count('\n') == 1 and err.startswith('regnet2mmdet: error: '), err
    assert message in err, err
    assert os.listdir(out) == [] and src.read_bytes() == before
    assert not (tmp_path / 'ran').exists()
    return err


def test_truncations_at_many_offsets_are_refused(real, tmp_path, capsys):
    _, data, _ = real
    offsets = sorted({1, 2, 4, 8, 30, 64, len(data) - 1, len(data) - 22, len(data) - 23}
                     | set(range(97, len(data), max(1, len(data) // 48))))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for offset in offsets:
        refused(tmp_path, capsys, data[:offset])
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 1 << 20  # KiB: 1 GiB


def _member_data(path):
    """The byte ranges of the zip members' data (after each local header and its padding)."""
    spans = []
    with zipfile.ZipFile(path) as archive, open(path, 'rb') as f:
        for info in archive.infolist():
            f.seek(info.header_offset + 26)
            name_len, extra_len = struct.unpack('<HH', f.read(4))
            start = info.header_offset + 30 + name_len + extra_len
            spans.append(range(start, start + info.compress_size))
    return spans


def test_single_byte_flips_are_refused_or_harmless(real, tmp_path, capsys):
    """A flip in any member's data is refused (its CRC-32), and so is one that breaks the
    zip structure; a flip in bytes nothing reads (torch's alignment padding, unused zip
    metadata) changes nothing: the result is exactly the original conversion."""
    path, data, converted = real
    spans = _member_data(path)
    harmless = []
    for offset in range(0, len(data), max(1, len(data) // 160)):
        flipped = bytearray(data)
        flipped[offset] ^= 0xA5
        src = tmp_path / 'flip.pth'
        src.write_bytes(bytes(flipped))
        dst = tmp_path / 'flip_out.pth'
        code = main([str(src), str(dst), '--force'])
        err = capsys.readouterr().err
        if code == 0:
            harmless.append(offset)
            result = torch.load(dst, weights_only=True)['state_dict']
            assert result.keys() == converted.keys()
            assert all(torch.equal(result[k], converted[k]) for k in result), offset
            dst.unlink()
        else:
            assert code == 1 and err.count('\n') == 1, (offset, err)
            assert not dst.exists()
        assert sorted(os.listdir(tmp_path)) == ['flip.pth']
    assert not [o for o in harmless if any(o in span for span in spans)]  # data: all caught
    assert len(harmless) < 40  # and most bytes are data or structure


def _safetensors(header, data=b''):
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack('<Q', len(raw)) + raw + data


_T = dict(dtype='F32', shape=[2, 2], data_offsets=[0, 16])
SAFETENSORS = {
    'missing offsets': ({'w': dict(dtype='F32', shape=[4])}, b'\0' * 16, 'lacks data_offsets'),
    'negative offsets': ({'w': dict(_T, data_offsets=[-16, 0])}, b'\0' * 16, 'data_offsets'),
    'float offsets': ({'w': dict(_T, data_offsets=[0.0, 16.0])}, b'\0' * 16, 'data_offsets'),
    'offsets past the file': ({'w': dict(_T, data_offsets=[0, 1 << 62])}, b'\0' * 16,
                              'data_offsets'),
    'overlapping': ({'a': _T, 'b': dict(_T, data_offsets=[8, 24])}, b'\0' * 24, 'overlap'),
    'huge shape': ({'w': dict(_T, shape=[1 << 40, 1 << 40])}, b'\0' * 16, 'shape'),
    'shape too long for the data': ({'w': dict(_T, shape=[4, 4])}, b'\0' * 16, 'needs 64 bytes'),
    'negative shape': ({'w': dict(_T, shape=[-1, 4])}, b'\0' * 16, 'shape'),
    'bool shape': ({'w': dict(_T, shape=[True, 4])}, b'\0' * 16, 'shape'),
    'too many dims': ({'w': dict(_T, shape=[1] * 40)}, b'\0' * 4, 'shape'),
    'unsupported dtype': ({'w': dict(_T, dtype='C64')}, b'\0' * 16, "dtype 'C64'"),
    'entry not an object': ({'w': 5}, b'', 'not an object'),
    'not json': (b'{"w": [1, 2', b'', 'not JSON'),
    'nested json bomb': (b'{"w": ' + b'[' * 100000 + b']' * 100000 + b'}', b'', 'safetensors'),
}


@pytest.mark.parametrize('case', list(SAFETENSORS))
def test_malformed_safetensors_headers_are_refused(case, tmp_path, capsys):
    header, data, message = SAFETENSORS[case]
    refused(tmp_path, capsys, _safetensors(header, data), message=message)


def test_header_length_beyond_the_file_is_refused(tmp_path, capsys):
    refused(tmp_path, capsys, struct.pack('<Q', 1 << 40) + b'{"w": {}}')


def _legacy(persistent, obj_reduce, storage_bytes=b''):
    """A legacy (pre-zip) torch file built by hand: magic, protocol, sys info, pickle, keys."""
    f = io.BytesIO()
    for value in (0x1950a86a20f9469cfc6c, 1001,
                  dict(protocol_version=1001, little_endian=True,
                       type_sizes=dict(short=2, int=4, long=4))):
        pickle.dump(value, f, protocol=2)
    marker = object()

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return persistent if obj is marker else None

    class Tensor:
        def __reduce__(self):
            return obj_reduce(marker)

    Pickler(f, protocol=2).dump({'state_dict': {'fc.weight': Tensor()}})
    pickle.dump(['0'], f, protocol=2)
    f.write(struct.pack('<q', len(storage_bytes) // 4) + storage_bytes)
    return f.getvalue()


def _rebuild(size, stride):
    return lambda storage: (torch._utils._rebuild_tensor_v2,
                            (storage, 0, size, stride, False, {}))


def test_malicious_pickles_run_no_code(real, tmp_path, capsys):
    marker = tmp_path / 'ran'
    raw = pickle.dumps({'state_dict': RunsCode(marker)}, protocol=2)
    err = refused(tmp_path, capsys, raw, message='refusing to load')
    assert 'open' in err  # names the global it asked for
    zipped = io.BytesIO()
    torch.save({'state_dict': {'w': torch.zeros(2)}, 'hook': RunsCode(marker)}, zipped)
    err = refused(tmp_path, capsys, zipped.getvalue(), message='refusing to load')
    assert 'io.open' in err  # every global torch would refuse, by its full name
    legacy = io.BytesIO()
    torch.save({'hook': RunsCode(marker)}, legacy, _use_new_zipfile_serialization=False)
    refused(tmp_path, capsys, legacy.getvalue(), message='refusing to load')
    system = pickle.dumps(_Reduce(os.system, f'touch {marker}'), protocol=4)
    refused(tmp_path, capsys, system, message='refusing to load')


class _Reduce:
    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return (self.fn, (self.arg,))


def test_forged_sizes_are_refused_before_allocation(tmp_path, capsys):
    storage = ('storage', torch.FloatStorage, '0', 'cpu', 4, None)
    fine = _legacy(storage, _rebuild((4,), (1,)), b'\0' * 16)
    huge_storage = _legacy(('storage', torch.FloatStorage, '0', 'cpu', 10 ** 12, None),
                           _rebuild((4,), (1,)), b'\0' * 16)
    repeated = _legacy(storage, _rebuild((1 << 20, 1 << 20), (0, 0)), b'\0' * 16)
    refused(tmp_path, capsys, huge_storage, message='truncated or corrupt')
    refused(tmp_path, capsys, repeated, extra=['--keep-head'], message='never repeats')
    refused(tmp_path, capsys, fine, message='no RegNet')  # parsed, then not a RegNet
    shared = {f'w{i}': torch.zeros(1 << 16)[None].expand(64, -1) for i in range(4)}
    zipped = io.BytesIO()
    torch.save(shared, zipped)
    refused(tmp_path, capsys, zipped.getvalue(), message='never repeats')


def test_deep_and_self_referencing_containers_are_refused(tmp_path, capsys):
    deep = []
    for _ in range(100):
        deep = [deep]
    dag = []
    for _ in range(60):  # 2**60 paths through 60 objects
        dag = [dag, dag]
    for obj, message in ((deep, 'nests containers'), (dag, 'holds a list')):
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        refused(tmp_path, capsys, buffer.getvalue(), message=message)


def test_bad_target_options_are_refused_before_the_source_is_read(real, tmp_path, capsys):
    src = real[0]
    for extra, message in ((['--stemless', '0'], '--stemless IN_CHANNELS must be'),
                           (['--stemless', '99999999'], 'in 1..32768'),
                           (['--strides', '1', '2'], 'one stride for each'),
                           (['--strides', '0', '2', '2'], '--strides must be integers'),
                           (['--strides', '-1', '2', '2'], '--strides must be integers'),
                           (['--stemless', '64', '--strides', '1', '2', '2', '99'],
                            'in 1..64')):
        refused(tmp_path, capsys, src=src, extra=extra, message=message)


CHILD = r'''
import json, resource, sys
import torch
import mmregnet.compat, mmregnet.models  # the stack's own mappings count as the baseline
from mmregnet.convert.cli import main
vm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmSize'))
resource.setrlimit(resource.RLIMIT_AS, ((vm << 10) + (1 << 30), resource.RLIM_INFINITY))
codes = [main(argv) for argv in json.loads(sys.argv[1])]
print(json.dumps(codes))
'''


def test_forged_sizes_in_a_child_capped_at_1_gib(real, tmp_path):
    """The cases that would allocate terabytes if a size were trusted, under RLIMIT_AS."""
    storage = ('storage', torch.FloatStorage, '0', 'cpu', 4, None)
    cases = {
        'legacy.pth': (_legacy(('storage', torch.FloatStorage, '0', 'cpu', 10 ** 12, None),
                               _rebuild((4,), (1,)), b'\0' * 16), []),
        'stride0.pth': (_legacy(storage, _rebuild((1 << 20, 1 << 20), (0, 0)), b'\0' * 16),
                        ['--keep-head']),
        'shape.safetensors': (_safetensors({'w': dict(_T, shape=[1 << 31, 1 << 31])},
                                           b'\0' * 16), []),
    }
    argvs = []
    for name, (data, extra) in cases.items():
        (tmp_path / name).write_bytes(data)
        argvs.append([str(tmp_path / name), str(tmp_path / f'{name}.out'), *extra])
    argvs.append([str(real[0]), str(tmp_path / 'wide.out'), '--stemless', '99999999',
                  '--strides', '1', '2', '2'])
    done = subprocess.run([sys.executable, '-c', CHILD, json.dumps(argvs)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == [1] * len(argvs), done.stderr
    assert done.stderr.count('regnet2mmdet: error: ') == len(argvs)
    assert 'unexpected' not in done.stderr and 'MemoryError' not in done.stderr
    assert sorted(os.listdir(tmp_path)) == sorted(cases)
