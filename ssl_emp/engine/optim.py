"""Optimizers and the learning-rate schedule.

The schedule is a function of training *progress* measured in sample-visits, not steps:
``progress = epoch + visits_this_epoch / samples_this_epoch``. When pruning changes the
number of steps per epoch the warm-up and cosine decay stay where they belong.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, get_args

import torch
from lightly.models.utils import get_weight_decay_parameters
from lightly.utils.lars import LARS
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from ssl_emp.config import TrainConfig
from ssl_emp.config.schema import OptimizerName
from ssl_emp.methods.base import PROGRESS_RESOLUTION

ParameterGroups = list[dict[str, Any]]

# train.optimizer -> (parameter groups, peak lr, train section) -> optimizer
OPTIMIZERS: dict[str, Callable[[ParameterGroups, float, TrainConfig], torch.optim.Optimizer]] = {
    "sgd": lambda groups, lr, config: torch.optim.SGD(groups, lr=lr, momentum=config.momentum),
    "lars": lambda groups, lr, config: LARS(groups, lr=lr, momentum=config.momentum),
    "adamw": lambda groups, lr, config: torch.optim.AdamW(groups, lr=lr),
}
if tuple(OPTIMIZERS) != get_args(OptimizerName):  # one list of names: the config's
    raise ImportError(f"optimizer registry {tuple(OPTIMIZERS)} != config {get_args(OptimizerName)}")


def peak_learning_rate(config: TrainConfig) -> float:
    """``lr * batch_size / 256`` (the linear scaling rule of SimCLR and MoCo)."""
    return config.lr * config.batch_size / 256


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The ``train.optimizer`` of :data:`OPTIMIZERS` (SGD, LARS from lightly, AdamW) over the
    trainable parameters; norm layers and biases get no weight decay (frozen parameters, e.g.
    a momentum encoder, are left out)."""
    decay, no_decay = get_weight_decay_parameters([model])
    decay = [parameter for parameter in decay if parameter.requires_grad]
    no_decay = [parameter for parameter in no_decay if parameter.requires_grad]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return OPTIMIZERS[config.optimizer](groups, peak_learning_rate(config), config)


def learning_rate_at(progress: float, config: TrainConfig) -> float:
    """Learning rate at ``progress`` epochs into training: linear warm-up, then cosine to 0.

    Args:
        progress: completed epochs plus the fraction of the current epoch's samples visited.
        config: the ``train`` section (peak lr, epochs, warm-up epochs).
    """
    peak = peak_learning_rate(config)
    warmup = min(config.warmup_epochs, config.epochs)
    if progress < warmup:
        return peak * progress / warmup
    step = round((progress - warmup) * PROGRESS_RESOLUTION)
    total = max(1, round((config.epochs - warmup) * PROGRESS_RESOLUTION))
    return cosine_schedule(min(step, total), total + 1, start_value=peak, end_value=0.0)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Write ``lr`` into every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr
