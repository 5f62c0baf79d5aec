"""Loading a detector checkpoint for export: the project's loader and fit check, one message.

Reading is :func:`mmregnet.checkpoint.fit.checkpoint_state` (weights only,
the project's one unpickling allow-list, sizes checked); a checkpoint that
does not fit the config's detector is refused before anything is exported,
naming the arch its RegNet backbone holds against the config's
(:func:`mmregnet.checkpoint.fit.fit_problems`, which reads the arch off the
tensor shapes as the converter does).
"""
from typing import Mapping

import torch
import torch.nn as nn

from ..checkpoint.fit import checkpoint_state, fit_problems
from .errors import DeployError


#: The state dict of a checkpoint file (a Runner checkpoint or a bare state dict).
read_checkpoint = checkpoint_state


def load_weights(model: nn.Module, state: Mapping[str, torch.Tensor], checkpoint: str,
                 config: str) -> None:
    """Loads ``state`` into ``model`` strictly, or refuses it in one line.

    Args:
        model: The config's detector.
        state: The checkpoint's weights.
        checkpoint: Its file, for the message.
        config: The config's file, for the message.

    Raises:
        DeployError: Weights that do not fit: the backbone arch each side has,
            then counts and examples of mismatching, missing and extra tensors.
    """
    problem = fit_problems(model, state)
    if problem:
        raise DeployError(f'checkpoint {checkpoint} does not fit config {config}: {problem}; '
                          'export it with the config it was trained with')
    model.load_state_dict(state, strict=True)
