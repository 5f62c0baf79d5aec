"""The RegNet design space as a tool: spaces, populations, a complexity search, plots.

The paper's contribution is the design space itself (Radosavovic et al.,
"Designing Network Design Spaces", CVPR 2020): :mod:`.space` holds its spaces
(AnyNetX A-E, RegNetX/Y and their refinement), :mod:`.population` draws
populations from them, :mod:`.fit` finds RegNets of a target complexity and
:mod:`.plots` draws the width rule and error EDFs. ``mmregnet`` on the command
line (:mod:`mmregnet.cli`) puts them in front of users.
"""
from .fit import Candidate, Target, search
from .measure import Measure
from .population import sample_population
from .space import SPACES, Net

__all__ = ['SPACES', 'Candidate', 'Measure', 'Net', 'Target', 'sample_population', 'search']
