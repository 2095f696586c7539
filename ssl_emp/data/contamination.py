"""Contaminated training data for robustness studies: a seeded share of the training images
replaced by junk, the self-supervised analogue of flipped labels.

Three kinds of junk, a third each: uniform noise, smooth noise blobs (low-resolution noise
upsampled, which a network finds easier to mistake for structure), and near-duplicates of one
real image (tiny perturbations of a single picture: redundant data). Labels are left as they
were; the junk flags travel with the run (``junk.npz``) for the visit diagnostics.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from ssl_emp.data.dataset import ImageData

JUNK_KINDS = ("noise", "blobs", "duplicates")


def add_junk(data: ImageData, fraction: float, seed: int) -> tuple[ImageData, np.ndarray]:
    """Replace a seeded ``fraction`` of ``data``'s images by junk.

    Returns:
        (the contaminated data, sorted indices of the junk samples).

    Shape:
        data.images: (N, C, H, W) -> the same shape; indices: (round(fraction * N),).

    Example:
        >>> clean = ImageData(torch.zeros(10, 1, 8, 8, dtype=torch.uint8), torch.zeros(10,
        ...     dtype=torch.long), 1, (0.5,), (0.25,), "toy")
        >>> dirty, junk = add_junk(clean, fraction=0.3, seed=0)
        >>> clean_rows = [i for i in range(10) if i not in junk]
        >>> len(junk), bool((dirty.images[junk] != 0).any()), int(dirty.images[clean_rows].sum())
        (3, True, 0)
    """
    generator = np.random.default_rng([seed, 0x7A4C])
    count, channels, height, width = data.images.shape
    junk = np.sort(generator.choice(count, size=round(fraction * count), replace=False))
    kinds = np.array_split(generator.permutation(junk), len(JUNK_KINDS))
    images = data.images.clone()
    noise, blobs, duplicates = (torch.from_numpy(np.sort(group)) for group in kinds)
    shape = (channels, height, width)
    images[noise] = torch.from_numpy(
        generator.integers(0, 256, size=(len(noise), *shape), dtype=np.uint8)
    )
    coarse = torch.from_numpy(generator.random((len(blobs), channels, 4, 4), dtype=np.float32))
    smooth = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    images[blobs] = (smooth.clamp(0, 1) * 255).round().to(torch.uint8)
    clean = np.setdiff1d(np.arange(count), junk)
    source = data.images[int(generator.choice(clean))].to(torch.int16)
    jitter = torch.from_numpy(
        generator.integers(-8, 9, size=(len(duplicates), *shape), dtype=np.int16)
    )
    images[duplicates] = (source + jitter).clamp(0, 255).to(torch.uint8)
    return replace(data, images=images), junk
