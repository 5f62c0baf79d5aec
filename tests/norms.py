"""Random BatchNorm statistics for the tests: with fresh (identity) norms, a folded or
converted network would match its reference even with its norms misplaced. One
implementation, the benchmark's (its seeded weights are the same)."""
from mmregnet.benchmark.backbone import randomize_norms

__all__ = ['randomize_norms']
