"""Batched view generation with kornia, on whatever device the images live on.

Presets follow the SimCLR and MoCo v2 recipes and adapt to the image size (blur only from
64 px up, kernel about a tenth of the side) and to grayscale data (no saturation, hue or
grayscale steps, which need three channels). Randomness comes from torch's global generator,
which the trainer seeds and stores in every checkpoint.
"""

from __future__ import annotations

import kornia.augmentation as K
import torch
from torch import nn

from ssl_emp.config import AugmentConfig

BLUR_MIN_SIZE = 64


class ViewAugmentation(nn.Module):
    """uint8 image batch -> normalised float views.

    Args:
        pipeline: kornia augmentations applied to float images in [0, 1].
        mean: per-channel mean used for the final normalisation.
        std: per-channel standard deviation used for the final normalisation.
    """

    def __init__(
        self, pipeline: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]
    ) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.normalize = K.Normalize(mean=torch.tensor(mean), std=torch.tensor(std))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Augment and normalise one batch of uint8 (N, C, H, W) images."""
        return self.normalize(self.pipeline(images.float().div_(255)))

    def two_views(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Two independently augmented views of the same batch."""
        return self(images), self(images)


def _jitter(strength: float, channels: int, brightness: float | None = None) -> nn.Module:
    """Colour jitter as in SimCLR (0.8 s, 0.8 s, 0.8 s, 0.2 s), applied with p = 0.8."""
    level = brightness if brightness is not None else 0.8 * strength
    if channels == 3:
        return K.ColorJitter(level, level, level, 0.2 * strength, p=0.8)
    return K.ColorJitter(level, level, 0.0, 0.0, p=0.8)


def _supervised_steps(size: int, source_size: int) -> nn.Module:
    """Supervised preset: (resize,) random crop with 1/8-side padding, horizontal flip."""
    steps: list[nn.Module] = []
    if size != source_size:
        steps.append(K.Resize((size, size), antialias=True))
    steps += [K.RandomCrop((size, size), padding=max(1, size // 8)), K.RandomHorizontalFlip()]
    return nn.Sequential(*steps)


def build_view_augmentation(
    config: AugmentConfig,
    channels: int,
    source_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> ViewAugmentation:
    """The view pipeline for ``config.preset`` at ``config.image_size`` (or the source size).

    Args:
        config: the ``augment`` section.
        channels: 1 (grayscale) or 3 (RGB).
        source_size: side length of the stored images.
        mean: per-channel normalisation mean of the dataset.
        std: per-channel normalisation std of the dataset.
    """
    size = config.image_size or source_size
    if config.preset == "supervised":
        return ViewAugmentation(_supervised_steps(size, source_size), mean=mean, std=std)
    steps: list[nn.Module] = [
        K.RandomResizedCrop(
            (size, size), scale=(config.crop_min_scale, 1.0), cropping_mode="resample"
        ),
        K.RandomHorizontalFlip(),
    ]
    if config.preset == "simclr":
        steps.append(_jitter(config.jitter_strength, channels))
    else:  # mocov2: jitter (0.4, 0.4, 0.4, 0.1)
        steps.append(_jitter(0.5, channels, brightness=0.4))
    if channels == 3:
        steps.append(K.RandomGrayscale(p=0.2))
    blur = config.blur if config.blur is not None else size >= BLUR_MIN_SIZE
    if blur:
        kernel = max(3, (size // 10) | 1)  # odd, ~10% of the side
        steps.append(K.RandomGaussianBlur((kernel, kernel), (0.1, 2.0), p=0.5))
    return ViewAugmentation(nn.Sequential(*steps), mean=mean, std=std)


def build_eval_transform(
    size: int, source_size: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> ViewAugmentation:
    """Deterministic transform for feature extraction: resize (if needed) and normalise."""
    steps: list[nn.Module] = []
    if size != source_size:
        steps.append(K.Resize((size, size), antialias=True))
    return ViewAugmentation(nn.Sequential(*steps), mean=mean, std=std)
