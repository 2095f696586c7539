"""SimSiam: a predictor maps one view's projection onto the other's, whose gradient is
stopped; a per-sample negative cosine loss, no negatives and no momentum network."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from lightly.models.modules import SimSiamPredictionHead, SimSiamProjectionHead
from torch import nn

from ssl_emp.config.schema import MethodConfig, option
from ssl_emp.data.augment import ViewAugmentation
from ssl_emp.methods.base import (
    FeatureLayer,
    Method,
    MethodOutput,
    embed_two_views,
    projection_head_export,
)
from ssl_emp.methods.losses import negative_cosine_per_sample, symmetric_per_sample
from ssl_emp.models.backbones import Backbone

if TYPE_CHECKING:
    from ssl_emp.config import Config
    from ssl_emp.data.dataset import ImageData


@dataclass
class SimSiamConfig(MethodConfig):
    """SimSiam's keys (``method.*``)."""

    predictor_hidden_dim: int | None = option(
        None,
        "hidden width of the predictor's bottleneck (default: a quarter of model.proj_dim, "
        "as SimSiam's 2048 -> 512 -> 2048)",
        ge=1,
    )


class SimSiam(Method):
    """SimSiam (Chen & He, 2021) with per-sample losses.

    ``l_i = (-cos(p_a_i, sg(z_b_i)) - cos(p_b_i, sg(z_a_i))) / 2`` with ``sg`` the stopped
    gradient; its batch mean is lightly's
    ``0.5 * (NegativeCosineSimilarity()(p0, z1.detach()) + ...(p1, z0.detach()))``.

    Args:
        backbone: encoder.
        augmentation: the view pipeline(s).
        proj_hidden_dim: hidden width of the projection head.
        proj_dim: output size of the projection head and the predictor.
        predictor_hidden_dim: the predictor's bottleneck width.
    """

    name: ClassVar[str] = "simsiam"
    config_class: ClassVar[type[MethodConfig]] = SimSiamConfig

    def __init__(
        self,
        backbone: Backbone,
        augmentation: ViewAugmentation,
        proj_hidden_dim: int,
        proj_dim: int,
        predictor_hidden_dim: int,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.augmentation = augmentation
        self.projection_dim = proj_dim
        self.head_dims = (backbone.feature_dim, proj_hidden_dim, proj_dim)
        self.projection_head = SimSiamProjectionHead(
            backbone.feature_dim, proj_hidden_dim, proj_dim
        )
        self.prediction_head = SimSiamPredictionHead(proj_dim, predictor_hidden_dim, proj_dim)

    @classmethod
    def from_config(
        cls, config: Config, backbone: Backbone, augmentation: ViewAugmentation, data: ImageData
    ) -> SimSiam:
        """SimSiam with the ``model`` and ``method`` sections of ``config``."""
        method = config.method
        assert isinstance(method, SimSiamConfig)
        proj_dim = config.model.proj_dim
        return cls(
            backbone,
            augmentation,
            proj_hidden_dim=config.model.proj_hidden_dim or backbone.feature_dim,
            proj_dim=proj_dim,
            predictor_hidden_dim=method.predictor_hidden_dim or max(1, proj_dim // 4),
        )

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> MethodOutput:
        """Per-sample SimSiam loss of a uint8 batch (B, C, H, W), with both views' features
        and projections (labels are not used)."""
        view_a, view_b = self.augmentation.two_views(images)
        batch = images.shape[0]
        features = self.backbone(torch.cat([view_a, view_b]))  # (2B, D), view a's rows first
        projections = self.projection_head(features)
        predictions = self.prediction_head(projections)
        z_a, z_b = projections.detach().chunk(2)  # the stopped gradient
        p_a, p_b = predictions.chunk(2)
        per_view = symmetric_per_sample(negative_cosine_per_sample, (p_a, z_b), (p_b, z_a))
        return MethodOutput(
            loss=(per_view[0] + per_view[1]) / 2,
            features=features.detach().view(2, batch, -1),
            projections=projections.detach().view(2, batch, -1),
            view_losses=per_view.detach(),
        )

    def export_head(self) -> tuple[nn.Module, dict[str, Any]]:
        """The projection head (``ssl-emp export --head``)."""
        return projection_head_export(self.projection_head, *self.head_dims)

    @torch.no_grad()
    def embed(self, images: torch.Tensor, layer: FeatureLayer = "backbone") -> torch.Tensor:
        """Backbone (or projection) features of two fresh views, shape (2, B, D)."""
        return embed_two_views(
            images, self.augmentation, self.backbone, self.projection_head, layer
        )
