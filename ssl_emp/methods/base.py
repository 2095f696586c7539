"""What a training method hands back to the trainer for one batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch


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
