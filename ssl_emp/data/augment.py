"""Batched view generation with kornia, on whatever device the images live on.

A preset (:data:`PRESETS`, ``augment.preset``) is one kornia pipeline per view: SimCLR's and
MoCo v2's apply the same pipeline to both views, BYOL's two views differ (blur always in the
first, rarely in the second; solarisation only in the second), as in lightly's
``BYOLTransform``. Presets adapt to the image size (blur only from 64 px up, kernel about a
tenth of the side) and to grayscale data (no saturation, hue or grayscale steps, which need
three channels). Colour jitter is :class:`~ssl_emp.data.jitter.ColorJitterWithoutSync`
(kornia's steps, without kornia's host-device synchronisations). Randomness comes from torch's
global generators, which the trainer seeds and stores in every checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import get_args

import kornia.augmentation as K
import torch
from torch import nn

from ssl_emp.config import AugmentConfig
from ssl_emp.config.schema import AugmentPreset
from ssl_emp.data.jitter import ColorJitterWithoutSync

BLUR_MIN_SIZE = 64


class ViewAugmentation(nn.Module):
    """uint8 image batch -> normalised float views, one pipeline per view.

    Args:
        pipelines: kornia augmentations applied to float images in [0, 1]: one module (every
            view alike) or one per view (the same module twice draws two independent views).
        mean: per-channel mean used for the final normalisation.
        std: per-channel standard deviation used for the final normalisation.
    """

    def __init__(
        self,
        pipelines: nn.Module | Sequence[nn.Module],
        mean: tuple[float, ...],
        std: tuple[float, ...],
    ) -> None:
        super().__init__()
        if isinstance(pipelines, nn.Module):
            pipelines = [pipelines]
        self.pipelines = nn.ModuleList(pipelines)
        self.normalize = K.Normalize(mean=torch.tensor(mean), std=torch.tensor(std))

    def view(self, images: torch.Tensor, index: int = 0) -> torch.Tensor:
        """The ``index``-th view's augmentation of a uint8 (N, C, H, W) batch, normalised
        (a preset with one pipeline uses it for every view)."""
        pipeline = self.pipelines[min(index, len(self.pipelines) - 1)]
        return self.normalize(pipeline(images.float().div_(255)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The first view of one batch of uint8 (N, C, H, W) images."""
        return self.view(images, 0)

    def two_views(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Two independently augmented views of the same batch (view 1, then view 2)."""
        return self.view(images, 0), self.view(images, 1)


def _jitter(strength: float, channels: int, brightness: float | None = None) -> nn.Module:
    """Colour jitter as in SimCLR (0.8 s, 0.8 s, 0.8 s, 0.2 s), applied with p = 0.8."""
    level = brightness if brightness is not None else 0.8 * strength
    if channels == 3:
        return ColorJitterWithoutSync(level, level, level, 0.2 * strength, p=0.8)
    return ColorJitterWithoutSync(level, level, 0.0, 0.0, p=0.8)


def _supervised_steps(size: int, source_size: int) -> nn.Module:
    """Supervised preset: (resize,) random crop with 1/8-side padding, horizontal flip."""
    steps: list[nn.Module] = []
    if size != source_size:
        steps.append(K.Resize((size, size), antialias=True))
    steps += [K.RandomCrop((size, size), padding=max(1, size // 8)), K.RandomHorizontalFlip()]
    return nn.Sequential(*steps)


def _crop_and_flip(config: AugmentConfig, size: int) -> list[nn.Module]:
    return [
        K.RandomResizedCrop(
            (size, size), scale=(config.crop_min_scale, 1.0), cropping_mode="resample"
        ),
        K.RandomHorizontalFlip(),
    ]


def _blur(config: AugmentConfig, size: int, p: float) -> list[nn.Module]:
    """Gaussian blur with probability ``p`` where blur is on (``augment.blur``, default from
    64 px up), kernel about a tenth of the side."""
    blur = config.blur if config.blur is not None else size >= BLUR_MIN_SIZE
    if not blur or p == 0:
        return []
    kernel = max(3, (size // 10) | 1)  # odd, ~10% of the side
    return [K.RandomGaussianBlur((kernel, kernel), (0.1, 2.0), p=p)]


def _contrastive(config: AugmentConfig, channels: int, size: int, jitter: nn.Module) -> nn.Module:
    """Crop, flip, colour jitter, grayscale (RGB only) and blur (p = 0.5)."""
    steps = [*_crop_and_flip(config, size), jitter]
    if channels == 3:
        steps.append(K.RandomGrayscale(p=0.2))
    steps += _blur(config, size, p=0.5)
    return nn.Sequential(*steps)


def _simclr(config: AugmentConfig, channels: int, size: int, source: int) -> list[nn.Module]:
    """SimCLR: jitter (0.8 s, 0.8 s, 0.8 s, 0.2 s), one pipeline for both views."""
    return [_contrastive(config, channels, size, _jitter(config.jitter_strength, channels))]


def _mocov2(config: AugmentConfig, channels: int, size: int, source: int) -> list[nn.Module]:
    """MoCo v2 (and SimSiam): jitter (0.4, 0.4, 0.4, 0.1), one pipeline for both views."""
    return [_contrastive(config, channels, size, _jitter(0.5, channels, brightness=0.4))]


def _byol(config: AugmentConfig, channels: int, size: int, source: int) -> list[nn.Module]:
    """BYOL's asymmetric views: jitter (0.4, 0.4, 0.2, 0.1) with p = 0.8 and grayscale 0.2 in
    both; blur with p = 1.0 in view 1 and 0.1 in view 2; solarisation (threshold 0.5) with
    p = 0.2 in view 2 only."""
    if channels == 3:
        jitter: nn.Module = ColorJitterWithoutSync(0.4, 0.4, 0.2, 0.1, p=0.8)
    else:
        jitter = ColorJitterWithoutSync(0.4, 0.4, 0.0, 0.0, p=0.8)
    views: list[nn.Module] = []
    for blur, solarize in ((1.0, 0.0), (0.1, 0.2)):
        steps = [*_crop_and_flip(config, size), jitter]
        if channels == 3:
            steps.append(K.RandomGrayscale(p=0.2))
        steps += _blur(config, size, p=blur)
        if solarize:
            steps.append(K.RandomSolarize(thresholds=0.0, additions=0.0, p=solarize))
        views.append(nn.Sequential(*steps))
    return views


def _supervised(config: AugmentConfig, channels: int, size: int, source: int) -> list[nn.Module]:
    """Supervised: (resize,) random crop with 1/8-side padding, horizontal flip."""
    return [_supervised_steps(size, source)]


# augment.preset -> (augment section, channels, view size, stored size) -> one pipeline per
# view (a single one serves every view)
PRESETS: dict[str, Callable[[AugmentConfig, int, int, int], list[nn.Module]]] = {
    "simclr": _simclr,
    "mocov2": _mocov2,
    "byol": _byol,
    "supervised": _supervised,
}
if tuple(PRESETS) != get_args(AugmentPreset):  # one list of names: the config's
    raise ImportError(f"preset registry {tuple(PRESETS)} != config {get_args(AugmentPreset)}")


def build_view_augmentation(
    config: AugmentConfig,
    channels: int,
    source_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> ViewAugmentation:
    """The view pipelines of ``config.preset`` (:data:`PRESETS`) at ``config.image_size`` (or
    the source size).

    Args:
        config: the ``augment`` section.
        channels: 1 (grayscale) or 3 (RGB).
        source_size: side length of the stored images.
        mean: per-channel normalisation mean of the dataset.
        std: per-channel normalisation std of the dataset.
    """
    size = config.image_size or source_size
    pipelines = PRESETS[config.preset](config, channels, size, source_size)
    return ViewAugmentation(pipelines, mean=mean, std=std)


def build_eval_transform(
    size: int, source_size: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> ViewAugmentation:
    """Deterministic transform for feature extraction: resize (if needed) and normalise."""
    steps: list[nn.Module] = []
    if size != source_size:
        steps.append(K.Resize((size, size), antialias=True))
    return ViewAugmentation(nn.Sequential(*steps), mean=mean, std=std)
