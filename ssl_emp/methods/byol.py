"""BYOL: an online network predicts a momentum target network's projection of the other view,
with a per-sample negative cosine loss and no negatives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
from torch import nn

from ssl_emp.config.schema import MethodConfig, option
from ssl_emp.data.augment import ViewAugmentation
from ssl_emp.methods.base import FeatureLayer, MethodOutput, embed_two_views, projection_head_export
from ssl_emp.methods.losses import negative_cosine_per_sample, symmetric_per_sample
from ssl_emp.methods.momentum import MomentumMethod, frozen_copy
from ssl_emp.models.backbones import Backbone

if TYPE_CHECKING:
    from ssl_emp.config import Config
    from ssl_emp.data.dataset import ImageData


@dataclass
class BYOLConfig(MethodConfig):
    """BYOL's keys (``method.*``)."""

    momentum: float = option(
        0.99, "start value of the target network's momentum (cosine schedule to 1)", ge=0.0, le=1.0
    )
    predictor_hidden_dim: int | None = option(
        None, "hidden width of the predictor (default: the projection head's)", ge=1
    )


class BYOL(MomentumMethod):
    """BYOL (Grill et al., 2020) with per-sample losses.

    The online network (backbone, projection head, predictor) predicts the target network's
    (momentum copies of backbone and head) projection of the other view:
    ``l_i = (-cos(p_a_i, t_b_i) - cos(p_b_i, t_a_i)) / 2``, whose batch mean is lightly's
    ``0.5 * (NegativeCosineSimilarity()(p0, z1) + NegativeCosineSimilarity()(p1, z0))``.
    The two views come from the ``byol`` preset's two different pipelines.

    Args:
        backbone: online encoder.
        augmentation: the two view pipelines.
        proj_hidden_dim: hidden width of the projection head.
        proj_dim: output size of the projection head and the predictor.
        predictor_hidden_dim: hidden width of the predictor.
        momentum: base momentum of the target network, raised to 1 on a cosine.
    """

    name: ClassVar[str] = "byol"
    config_class: ClassVar[type[MethodConfig]] = BYOLConfig

    def __init__(
        self,
        backbone: Backbone,
        augmentation: ViewAugmentation,
        proj_hidden_dim: int,
        proj_dim: int,
        predictor_hidden_dim: int,
        momentum: float,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.augmentation = augmentation
        self.projection_dim = proj_dim
        self.head_dims = (backbone.feature_dim, proj_hidden_dim, proj_dim)
        self.projection_head = BYOLProjectionHead(backbone.feature_dim, proj_hidden_dim, proj_dim)
        self.prediction_head = BYOLPredictionHead(proj_dim, predictor_hidden_dim, proj_dim)
        self.target_backbone = frozen_copy(backbone)
        self.target_projection_head = frozen_copy(self.projection_head)
        self.init_momentum(momentum)

    @classmethod
    def from_config(
        cls, config: Config, backbone: Backbone, augmentation: ViewAugmentation, data: ImageData
    ) -> BYOL:
        """BYOL with the ``model`` and ``method`` sections of ``config``."""
        method = config.method
        assert isinstance(method, BYOLConfig)
        hidden = config.model.proj_hidden_dim or backbone.feature_dim
        return cls(
            backbone,
            augmentation,
            proj_hidden_dim=hidden,
            proj_dim=config.model.proj_dim,
            predictor_hidden_dim=method.predictor_hidden_dim or hidden,
            momentum=method.momentum,
        )

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """The target network follows the online backbone and projection head."""
        return [
            (self.backbone, self.target_backbone),
            (self.projection_head, self.target_projection_head),
        ]

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> MethodOutput:
        """Per-sample BYOL loss of a uint8 batch (B, C, H, W), with both views' online
        features and projections (labels are not used)."""
        view_a, view_b = self.augmentation.two_views(images)
        batch = images.shape[0]
        # both views through each network in one call, view a's rows first: (2B, D)
        features = self.backbone(torch.cat([view_a, view_b]))
        projections = self.projection_head(features)
        predictions = self.prediction_head(projections)
        with torch.no_grad():
            targets = self.target_projection_head(self.target_backbone(torch.cat([view_a, view_b])))
        p_a, p_b = predictions.chunk(2)
        t_a, t_b = targets.chunk(2)
        # row 0: view a predicts the target of view b; row 1: view b predicts view a's
        per_view = symmetric_per_sample(negative_cosine_per_sample, (p_a, t_b), (p_b, t_a))
        return MethodOutput(
            loss=(per_view[0] + per_view[1]) / 2,
            features=features.detach().view(2, batch, -1),
            projections=projections.detach().view(2, batch, -1),
            view_losses=per_view.detach(),
        )

    def export_head(self) -> tuple[nn.Module, dict[str, Any]]:
        """The online projection head (``ssl-emp export --head``)."""
        return projection_head_export(self.projection_head, *self.head_dims)

    @torch.no_grad()
    def embed(self, images: torch.Tensor, layer: FeatureLayer = "backbone") -> torch.Tensor:
        """Online backbone (or projection) features of two fresh views, shape (2, B, D); the
        target network is left alone."""
        return embed_two_views(
            images, self.augmentation, self.backbone, self.projection_head, layer
        )
