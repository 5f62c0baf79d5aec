"""Side-by-side speed and memory of mmregnet's RegNet against mmdet's and mmdet3d's.

Used by ``tools/analysis_tools/benchmark.py`` and ``benchmarks/``. Every race
runs the contenders interleaved in one process with the same weights, and
checks their outputs agree before timing them.
"""
from .backbone import BackboneCase, build_ours, build_reference, randomize_norms
from .runs import run_backbone, run_detector, run_with_cp_memory

__all__ = ['BackboneCase', 'build_ours', 'build_reference', 'randomize_norms', 'run_backbone',
           'run_detector', 'run_with_cp_memory']
