"""Side-by-side speed and memory of mmregnet's RegNet and deployed detectors.

Used by ``tools/analysis_tools/benchmark.py`` and ``benchmarks/``. Every race
runs the contenders interleaved in one process with the same weights, and
checks their outputs agree before timing them. Building, deploying and
exporting are :mod:`mmregnet.deploy`'s; this package only measures.
"""
from .backbone import BackboneCase, build_ours, build_reference, randomize_norms
from .runs import run_backbone, run_with_cp_memory


def run_detector(*args, **kwargs):
    """:func:`mmregnet.benchmark.detector_race.run_detector` (imported on use: it needs mmdet3d)."""
    from .detector_race import run_detector as run  # lazy: mmdet3d
    return run(*args, **kwargs)


__all__ = ['BackboneCase', 'build_ours', 'build_reference', 'randomize_norms', 'run_backbone',
           'run_detector', 'run_with_cp_memory']
