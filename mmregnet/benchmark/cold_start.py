"""Cold start of the light runtime: import, session creation and first frame.

A deployed detector pays these once per process (a robot's boot, a server
scaling up). They are measured in a new interpreter that imports only
:mod:`mmregnet.deploy` (numpy and onnxruntime), as a user's program would:
the benchmark's own process has torch loaded already, which would hide the
import.
"""
import json
import os
import subprocess
import sys
import tempfile
from typing import Dict

import numpy as np

from ..processes import die_with_parent
from .timing import percentile

#: The child: times its own import, ``OnnxDetector(DIR)`` and one ``detect``.
_PROGRAM = """
import json, sys, time
start = time.perf_counter()
import numpy as np
from mmregnet.deploy import OnnxDetector
imported = time.perf_counter()
det = OnnxDetector(sys.argv[1], providers=['CPUExecutionProvider'])
opened = time.perf_counter()
det.detect(np.load(sys.argv[2]))
done = time.perf_counter()
print(json.dumps(dict(import_s=imported - start, open_s=opened - imported,
                      first_frame_s=done - opened, total_s=done - start,
                      loads_torch='torch' in sys.modules)))
"""
PHASES = ('import_s', 'open_s', 'first_frame_s', 'total_s')


def cold_start(folder: str, cloud: np.ndarray, runs: int = 3,
               timeout_s: float = 300.0) -> Dict[str, object]:
    """Median seconds of each cold-start phase of :class:`~mmregnet.deploy.OnnxDetector`.

    Args:
        folder: An export folder.
        cloud: The first frame, ``(N, C)`` float32.
        runs: Fresh interpreters started, one after another.
        timeout_s: Limit of each.

    Returns:
        ``import_s``, ``open_s``, ``first_frame_s``, ``total_s`` (medians),
        ``runs``, and ``loads_torch``: whether any child ended with torch imported.

    Raises:
        RuntimeError: A child failed; the message holds the end of its stderr.
    """
    with tempfile.TemporaryDirectory() as scratch:  # the export folder stays as it is
        path = os.path.join(scratch, 'cloud.npy')
        np.save(path, np.ascontiguousarray(cloud, dtype=np.float32))
        found = [_one_run(folder, path, timeout_s) for _ in range(runs)]
    medians = {k: percentile([run[k] for run in found], 50) for k in PHASES}
    return dict(medians, runs=runs, loads_torch=any(run['loads_torch'] for run in found))


def _one_run(folder: str, cloud_path: str, timeout_s: float) -> Dict:
    done = subprocess.run([sys.executable, '-c', _PROGRAM, folder, cloud_path],
                          capture_output=True, text=True, timeout=timeout_s,
                          preexec_fn=die_with_parent)  # an orphan would skew later timings
    if done.returncode != 0:
        raise RuntimeError(f'the cold-start child exited {done.returncode}: '
                           f'{done.stderr.strip()[-2000:]}')
    return json.loads(done.stdout.strip().splitlines()[-1])
