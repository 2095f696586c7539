"""Per-channel normalisation statistics of uint8 images, computed one way for every path.

An image folder gets its mean and std from its training images, both when it is loaded into
memory and when ``ssl-emp prepare`` streams it into a store a chunk at a time. Both go through
:class:`ChannelMoments`, which keeps a per-channel histogram of the 256 pixel values: its
counts are exact integers whatever the order and chunking of the images, and the mean and std
are computed from them once, in exact integer arithmetic up to one final rounding. So a
store prepared from a folder normalises, and trains, bit-identically to the folder in memory.

(Fashion-MNIST and CIFAR use their published statistics; the synthetic test data keeps the
float32 statistics its golden runs were recorded with; a store of either copies them.)
"""

from __future__ import annotations

import math

import numpy as np
import torch

MIN_STD = 1e-3  # a constant channel would otherwise divide by zero
LEVELS = 256


class ChannelMoments:
    """Pixel-value counts per channel of the uint8 images added so far.

    Args:
        channels: colour channels of the images (1 or 3).
    """

    def __init__(self, channels: int) -> None:
        self.counts = np.zeros((channels, LEVELS), dtype=np.int64)

    def add(self, images: torch.Tensor) -> None:
        """Count the pixels of a uint8 (B, C, H, W) batch."""
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(
                f"expected uint8 (B, C, H, W) images, got {images.dtype} {images.ndim}-d"
            )
        for channel in range(self.counts.shape[0]):
            values = images[:, channel].reshape(-1)
            self.counts[channel] += torch.bincount(values, minlength=LEVELS).numpy()

    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and standard deviation in [0, 1].

        The std has Bessel's correction (as ``torch.std``), sqrt((n S2 - S1^2) / (n (n - 1)))
        with S1 and S2 the sums of the pixel values and of their squares, and is at least
        ``MIN_STD``.
        """
        levels = np.arange(LEVELS, dtype=np.int64)
        means, stds = [], []
        for counts in self.counts:
            n = int(counts.sum())
            first = int(counts @ levels)  # exact: at most 255 n
            second = int(counts @ (levels * levels))
            means.append(first / (255 * n) if n else 0.0)
            spread = n * second - first * first  # n^2 times the variance, an exact integer
            variance = spread / (n * (n - 1) * 255 * 255) if n > 1 else 0.0
            stds.append(max(math.sqrt(variance), MIN_STD))
        return tuple(means), tuple(stds)


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] of uint8 (N, C, H, W) images (:class:`ChannelMoments`)."""
    moments = ChannelMoments(int(images.shape[1]))
    moments.add(images)
    return moments.mean_std()
