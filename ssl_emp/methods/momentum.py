"""The momentum (EMA target) machinery that MoCo v2 and BYOL share.

A momentum method trains online modules and keeps a frozen copy of some of them, the targets,
that follows the online weights by an exponential moving average,
``theta_target <- m theta_target + (1 - m) theta_online``, with lightly's ``update_momentum``.
The momentum ``m`` rises on a cosine from ``base_momentum`` to 1 over the training progress
(quantised like the learning rate, so a resume reproduces it), and the update runs in
:meth:`MomentumMethod.commit_step`, once the trainer accepted the step: a skipped step leaves
the targets as they were. A subclass lists its (online, target) pairs in
:meth:`MomentumMethod.momentum_pairs`; the two methods then differ only in heads and loss.
"""

from __future__ import annotations

import copy

import torch
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from ssl_emp.methods.base import PROGRESS_RESOLUTION, Method


def frozen_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` that no gradient reaches (a momentum target)."""
    target = copy.deepcopy(module)
    deactivate_requires_grad(target)
    return target


class MomentumMethod(Method):
    """A method with EMA targets of some of its modules.

    Subclasses call :meth:`init_momentum` in their constructor and implement
    :meth:`momentum_pairs`.

    Attributes:
        base_momentum: the momentum at the start of training.
        current_momentum: the momentum of the step in progress (set by :meth:`before_step`).
    """

    base_momentum: float
    current_momentum: float

    def init_momentum(self, momentum: float) -> None:
        """Start the schedule at ``momentum``."""
        self.base_momentum = momentum
        self.current_momentum = momentum

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(online module, its target) pairs that the EMA updates, in a fixed order."""
        raise NotImplementedError

    def before_step(self, progress: float, epochs: int) -> None:
        """Momentum for this step: cosine from the base value to 1 over training."""
        # progress in epochs, quantised to PROGRESS_RESOLUTION per epoch like the learning
        # rate, so the schedule is a function of sample-visits and a resume repeats it
        step = round(progress * PROGRESS_RESOLUTION)
        total = max(1, epochs * PROGRESS_RESOLUTION)
        self.current_momentum = cosine_schedule(
            min(step, total), total + 1, start_value=self.base_momentum, end_value=1.0
        )

    @torch.no_grad()
    def momentum_update(self) -> None:
        """``theta_target <- m theta_target + (1 - m) theta_online`` for every pair."""
        for online, target in self.momentum_pairs():
            update_momentum(online, target, m=self.current_momentum)

    def commit_step(self) -> None:
        """After an accepted optimizer step: the targets move towards the new weights."""
        self.momentum_update()
