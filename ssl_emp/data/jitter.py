"""Colour jitter that never makes the host wait for the device.

kornia's ``ColorJitter`` decides on the host whether each of its four steps runs
(``(factors != neutral).any()`` on the device's factors) and reads its random order back
with ``tolist()``: five host-device synchronisations per call, ten per SimCLR step, each one
idling a GPU until the host catches up. :class:`ColorJitterWithoutSync` draws the same
distribution with every per-sample factor on the device and the order of the steps on the
host, and applies kornia's own functional steps to the whole batch, so nothing is read
back. Its output equals kornia's ``ColorJitter`` given the same factors and order (tested);
the random draws differ from kornia's, so runs are not bit-identical to the kornia module's.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from kornia.enhance import (
    adjust_brightness_accumulative,
    adjust_contrast_with_mean_subtraction,
    adjust_hue,
    adjust_saturation_with_gray_subtraction,
)
from torch import nn

# kornia's parameter names, in its step order: brightness, contrast, saturation, hue
FACTOR_NAMES = ("brightness_factor", "contrast_factor", "saturation_factor", "hue_factor")


def _hue_turns(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return adjust_hue(images, factor * 2 * math.pi)  # kornia's ColorJitter: hue in turns


STEPS: tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], ...] = (
    adjust_brightness_accumulative,
    adjust_contrast_with_mean_subtraction,
    adjust_saturation_with_gray_subtraction,
    _hue_turns,
)


class ColorJitterWithoutSync(nn.Module):
    """Random brightness, contrast, saturation and hue, each sample with probability ``p``.

    The factor ranges are kornia's (and torchvision's): brightness, contrast and saturation
    uniform in ``[max(0, 1 - x), 1 + x]``, hue in ``[-h, h]`` turns. A component of strength 0
    is left out (what kornia does when every factor is neutral), so grayscale images take
    brightness and contrast only. The steps run in one random order per batch, as in kornia.

    Randomness: whether each sample is jittered and its factors come from the device's global
    generator (``torch.rand`` on the images' device); the order from the CPU generator. The
    trainer seeds both and checkpoints both, so resumed runs repeat it exactly.

    Args:
        brightness: brightness strength x.
        contrast: contrast strength x.
        saturation: saturation strength x (3-channel images only).
        hue: hue strength h, at most 0.5.
        p: probability that a sample is jittered.

    Shape:
        images: (B, C, H, W) float in [0, 1] -> (B, C, H, W), same dtype.
    """

    def __init__(
        self,
        brightness: float = 0.0,
        contrast: float = 0.0,
        saturation: float = 0.0,
        hue: float = 0.0,
        p: float = 1.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {hue}")
        strengths = (brightness, contrast, saturation, hue)
        if min(strengths) < 0:
            raise ValueError(f"jitter strengths must be >= 0, got {strengths}")
        self.p = p
        # (step index into STEPS, low, high) of each component that can change an image
        self.ranges = [
            (index, -strength, strength)
            if index == 3
            else (index, max(0.0, 1 - strength), 1 + strength)
            for index, strength in enumerate(strengths)
            if strength > 0
        ]

    def sample(self, batch: int, device: torch.device) -> dict[str, torch.Tensor]:
        """One call's random parameters in kornia's names: ``batch_prob`` (1.0 for the samples
        jittered), one ``*_factor`` per active component, and ``order`` (indices into
        (brightness, contrast, saturation, hue), on the CPU)."""
        params = {"batch_prob": (torch.rand(batch, device=device) < self.p).float()}
        for index, low, high in self.ranges:
            params[FACTOR_NAMES[index]] = torch.rand(batch, device=device) * (high - low) + low
        active = torch.tensor([index for index, _, _ in self.ranges], dtype=torch.long)
        params["order"] = active[torch.randperm(len(active))]  # host-side: nothing to read back
        return params

    def transform(self, images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Jitter ``images`` with drawn ``params`` (see :meth:`sample`)."""
        jittered = images.clamp(0, 1)
        for index in params["order"].tolist():  # a CPU tensor: no device synchronisation
            jittered = STEPS[index](jittered, params[FACTOR_NAMES[index]])
        jittered = jittered.clamp(0, 1)
        chosen = params["batch_prob"].view(-1, 1, 1, 1) > 0.5  # (B, 1, 1, 1), broadcast
        return torch.where(chosen, jittered, images).to(images.dtype)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Jittered ``images`` with freshly drawn parameters."""
        return self.transform(images, self.sample(images.shape[0], images.device))
