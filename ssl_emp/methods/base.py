"""The interface every training method implements, and what it hands back per batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ssl_emp.models.backbones import Backbone


@dataclass
class MethodOutput:
    """Per-sample results of one training step.

    Attributes:
        loss: per-sample loss, shape (B,), differentiable.
        features: backbone features of the batch (detached), for memory terms and monitors;
            for two-view methods the features of both views, shape (2, B, D).
        projections: projection-head outputs (detached), same layout as ``features``.
        logits: class logits (detached) of supervised methods, shape (B, C).
    """

    loss: torch.Tensor
    features: torch.Tensor | None = None
    projections: torch.Tensor | None = None
    logits: torch.Tensor | None = None


class Method(nn.Module):
    """A training objective around a backbone: uint8 images (+ labels) -> per-sample losses.

    Subclasses set ``self.backbone`` and implement :meth:`forward`.
    """

    backbone: Backbone

    def before_step(self, progress: float, epochs: int) -> None:
        """Hook called before each step with the training progress in epochs (default: none)."""

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> MethodOutput:
        """Per-sample losses of a uint8 batch (B, C, H, W) with its labels (B,)."""
        raise NotImplementedError
