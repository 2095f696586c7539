"""Numerical guards shared by the losses and the memory terms."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import torch

Params = ParamSpec("Params")
Result = TypeVar("Result")
AUTOCAST_DEVICES = ("cpu", "cuda")


def full_precision(function: Callable[Params, Result]) -> Callable[Params, Result]:
    """Run ``function`` with autocast switched off, so what it computes from float32 inputs
    stays float32.

    Per-sample losses and memory terms become pruning scores: under bf16 autocast their
    matrix products would round to 8 bits of mantissa and reorder samples whose scores are
    close. The model's forward pass may still run in bf16; the scores are computed from its
    outputs (cast to float32) at full precision.
    """

    @functools.wraps(function)
    def without_autocast(*args: Params.args, **kwargs: Params.kwargs) -> Result:
        with contextlib.ExitStack() as stack:
            for device_type in AUTOCAST_DEVICES:
                if torch.is_autocast_enabled(device_type):
                    stack.enter_context(torch.autocast(device_type=device_type, enabled=False))
            return function(*args, **kwargs)

    return without_autocast
