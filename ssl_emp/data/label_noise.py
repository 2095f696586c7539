"""Symmetric label noise for robustness studies of the supervised path."""

from __future__ import annotations

import numpy as np
import torch


def flip_labels(
    labels: torch.Tensor, fraction: float, num_classes: int, seed: int
) -> tuple[torch.Tensor, np.ndarray]:
    """Replace a seeded ``fraction`` of the labels by a different class, uniformly at random.

    Returns:
        (noisy labels, sorted indices of the flipped samples).
    """
    rng = np.random.default_rng([seed, 0x4015E])
    count = round(fraction * len(labels))
    flipped = np.sort(rng.choice(len(labels), size=count, replace=False))
    shift = rng.integers(1, num_classes, size=count)  # never 0: always a different class
    noisy = labels.clone()
    original = labels[torch.from_numpy(flipped)]
    noisy[torch.from_numpy(flipped)] = (original + torch.from_numpy(shift)) % num_classes
    return noisy, flipped
