"""Supervised classification: one augmented view, a linear classifier, per-sample CE."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from ssl_emp.data.augment import ViewAugmentation, build_eval_transform
from ssl_emp.methods.base import FeatureLayer, Method, MethodOutput
from ssl_emp.methods.losses import cross_entropy_per_sample
from ssl_emp.models.backbones import Backbone

if TYPE_CHECKING:
    from ssl_emp.config import Config
    from ssl_emp.data.dataset import ImageData


class Supervised(Method):
    """Backbone + linear classifier trained with per-sample cross-entropy.

    Args:
        backbone: encoder.
        augmentation: training view pipeline (the ``supervised`` preset: crop + flip).
        eval_transform: deterministic transform for :meth:`predict`.
        num_classes: number of classes C.
    """

    name: ClassVar[str] = "supervised"
    supervised: ClassVar[bool] = True
    two_views: ClassVar[bool] = False
    memory_estimator: ClassVar[str | None] = "prediction"

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

    @classmethod
    def from_config(
        cls, config: Config, backbone: Backbone, augmentation: ViewAugmentation, data: ImageData
    ) -> Supervised:
        """A classifier over ``data``'s classes; predictions resize to the training size."""
        size = config.augment.image_size or data.image_size
        eval_transform = build_eval_transform(size, data.image_size, data.mean, data.std)
        return cls(backbone, augmentation, eval_transform, num_classes=data.num_classes)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> MethodOutput:
        """Per-sample cross-entropy of a uint8 batch against ``labels``."""
        features = self.backbone(self.augmentation(images))
        logits = self.classifier(features)
        return MethodOutput(
            loss=cross_entropy_per_sample(logits, labels),
            features=features.detach()[None],
            logits=logits.detach(),
        )

    def export_head(self) -> tuple[nn.Module, dict[str, Any]]:
        """The linear classifier (``ssl-emp export --head``)."""
        kwargs = {
            "in_features": self.classifier.in_features,
            "out_features": self.classifier.out_features,
        }
        return self.classifier, {"class": "Linear", "kwargs": kwargs}

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits of uint8 images without augmentation (call in eval mode)."""
        logits: torch.Tensor = self.classifier(self.backbone(self.eval_transform(images)))
        return logits

    @torch.no_grad()
    def embed(self, images: torch.Tensor, layer: FeatureLayer = "backbone") -> torch.Tensor:
        """Backbone features of one fresh training view, shape (1, B, D) (no projection head:
        ``layer`` must be ``backbone``)."""
        if layer != "backbone":
            raise ValueError("supervised models have no projection layer")
        features: torch.Tensor = self.backbone(self.augmentation(images))
        return features[None]  # (1, B, D): one view
