"""Supervised classification: one augmented view, a linear classifier, per-sample CE."""

from __future__ import annotations

import torch
from torch import nn

from ssl_emp.augment import ViewAugmentation
from ssl_emp.losses import cross_entropy_per_sample
from ssl_emp.methods.base import Method, MethodOutput
from ssl_emp.models.backbones import Backbone


class Supervised(Method):
    """Backbone + linear classifier trained with per-sample cross-entropy.

    Args:
        backbone: encoder.
        augmentation: training view pipeline (the ``supervised`` preset: crop + flip).
        eval_transform: deterministic transform for :meth:`predict`.
        num_classes: number of classes C.
    """

    def __init__(
        self,
        backbone: Backbone,
        augmentation: ViewAugmentation,
        eval_transform: ViewAugmentation,
        num_classes: int,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.augmentation = augmentation
        self.eval_transform = eval_transform
        self.classifier = nn.Linear(backbone.feature_dim, num_classes)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> MethodOutput:
        """Per-sample cross-entropy of a uint8 batch against ``labels``."""
        features = self.backbone(self.augmentation(images))
        logits = self.classifier(features)
        return MethodOutput(
            loss=cross_entropy_per_sample(logits, labels),
            features=features.detach()[None],
            logits=logits.detach(),
        )

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits of uint8 images without augmentation (call in eval mode)."""
        return self.classifier(self.backbone(self.eval_transform(images)))
