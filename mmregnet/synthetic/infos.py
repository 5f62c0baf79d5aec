"""Info files (mmdet3d's v2 ``*_infos_*.pkl``) by mmdet3d's own converter.

mmdet3d ships its ``tools/create_data.py`` in the wheel under ``mmdet3d/.mim``.
It imports ``tools.dataset_converters`` (so ``.mim`` must be on
``PYTHONPATH``) and reads a few paths relative to the working directory
(``./data/nuscenes`` for the camera annotations, ``data/lyft/*.txt`` for the
Lyft splits). :func:`create_infos` therefore runs it in a scratch working
directory whose ``data/<name>`` links to the dataset, whatever the dataset's
real path.

The scratch folder lies inside the dataset folder and is removed when the
converter ends, fails or is interrupted; one left by a killed run (its name
holds the dead process's id) is removed by the next. The converter's process
is killed when ours dies (Linux), so it never outlives a killed generator.
"""
import os
import shutil
import subprocess
import sys
import tempfile
from typing import List

from ..fileio import remove_stale_parts
from ..processes import die_with_parent

_SCRATCH = 'create-data-scratch'

INFO_FILES = {
    'nuscenes': ('nuscenes_infos_train.pkl', 'nuscenes_infos_val.pkl'),
    'lyft': ('lyft_infos_train.pkl', 'lyft_infos_val.pkl', 'lyft_infos_test.pkl'),
}


def mim_root() -> str:
    """The ``.mim`` folder of the installed mmdet3d (configs and tools)."""
    import mmdet3d  # lazy: an extra, only for its converter
    root = os.path.join(os.path.dirname(mmdet3d.__file__), '.mim')
    if not os.path.isfile(os.path.join(root, 'tools', 'create_data.py')):
        raise FileNotFoundError(f'mmdet3d at {root} ships no tools/create_data.py; '
                                f'install the mmdet3d wheel (pip install mmdet3d==1.4.0)')
    return root


def converter_command(dataset: str, max_sweeps: int) -> List[str]:
    """The create_data.py command line for a dataset linked at ``./data/<dataset>``.

    Args:
        dataset: ``'nuscenes'`` or ``'lyft'``.
        max_sweeps: Sweeps recorded per key frame in the infos.

    Returns:
        The argument list.
    """
    version = {'nuscenes': 'v1.0-mini', 'lyft': 'v1.01'}
    if dataset not in version:
        raise ValueError(f'dataset must be one of {sorted(version)}, got {dataset!r}')
    root = f'./data/{dataset}'
    return [sys.executable, os.path.join(mim_root(), 'tools', 'create_data.py'), dataset,
            '--root-path', root, '--out-dir', root, '--extra-tag', dataset,
            '--version', version[dataset], '--max-sweeps', str(max_sweeps)]


def create_infos(dataset: str, root: str, max_sweeps: int = 10, quiet: bool = False) -> List[str]:
    """Runs mmdet3d's converter on a dataset folder; the info files land in it.

    Args:
        dataset: ``'nuscenes'`` or ``'lyft'``.
        root: The dataset folder.
        max_sweeps: Sweeps recorded per key frame in the infos.
        quiet: Hide the converter's output unless it fails.

    Returns:
        Paths of the info files written.

    Raises:
        RuntimeError: The converter failed (its output is in the message).
    """
    command = converter_command(dataset, max_sweeps)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [mim_root()] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]))
    # Named as mmregnet.fileio names temporaries, so a killed run's is found and removed.
    remove_stale_parts(os.path.join(root, _SCRATCH))
    cwd = tempfile.mkdtemp(prefix=f'.{_SCRATCH}.{os.getpid()}.', suffix='.part', dir=root)
    try:
        os.makedirs(os.path.join(cwd, 'data'))
        os.symlink(os.path.abspath(root), os.path.join(cwd, 'data', dataset))
        # On an exception (Ctrl-C, SIGTERM) subprocess.run kills the child before re-raising.
        result = subprocess.run(command, cwd=cwd, env=env, text=True,
                                stdout=subprocess.PIPE if quiet else None,
                                stderr=subprocess.STDOUT if quiet else None,
                                preexec_fn=die_with_parent)
    finally:
        shutil.rmtree(cwd, ignore_errors=True)  # removes the link, never follows it
    if result.returncode != 0:
        raise RuntimeError(f'mmdet3d create_data.py failed for {root} (exit {result.returncode}):'
                           f'\n{result.stdout or ""}')
    paths = [os.path.join(root, name) for name in INFO_FILES[dataset]]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise RuntimeError(f'mmdet3d create_data.py did not write {missing}')
    return paths
