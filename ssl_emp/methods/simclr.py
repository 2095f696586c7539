"""SimCLR: two augmented views, a projection head, and the per-sample NT-Xent loss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from lightly.models.modules import SimCLRProjectionHead
from torch import nn

from ssl_emp.collectives import gather_rows_with_grad, gathered_sizes, is_distributed
from ssl_emp.config.schema import MethodConfig, option
from ssl_emp.data.augment import ViewAugmentation
from ssl_emp.methods.base import (
    FeatureLayer,
    Method,
    MethodOutput,
    embed_two_views,
    projection_head_export,
)
from ssl_emp.methods.losses import nt_xent_per_view
from ssl_emp.models.backbones import Backbone

if TYPE_CHECKING:
    from ssl_emp.config import Config
    from ssl_emp.data.dataset import ImageData


@dataclass
class SimCLRConfig(MethodConfig):
    """SimCLR's keys (``method.*``)."""

    temperature: float = option(0.2, "softmax temperature tau of NT-Xent", gt=0.0)
    gather_negatives: bool = option(
        True, "under torchrun: use every rank's views as negatives (global batch)"
    )


class SimCLR(Method):
    """SimCLR (Chen et al., 2020) with per-sample losses.

    Args:
        backbone: encoder producing the features h.
        augmentation: view pipeline applied to each uint8 batch (twice).
        proj_hidden_dim: hidden width of lightly's projection head.
        proj_dim: output size of the projection head.
        temperature: NT-Xent temperature.
        gather_negatives: under torchrun, contrast against every rank's views.
    """

    name: ClassVar[str] = "simclr"
    config_class: ClassVar[type[MethodConfig]] = SimCLRConfig

    def __init__(
        self,
        backbone: Backbone,
        augmentation: ViewAugmentation,
        proj_hidden_dim: int,
        proj_dim: int,
        temperature: float,
        gather_negatives: bool = True,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.augmentation = augmentation
        self.projection_dim = proj_dim
        self.head_dims = (backbone.feature_dim, proj_hidden_dim, proj_dim)
        self.projection_head = SimCLRProjectionHead(
            input_dim=backbone.feature_dim, hidden_dim=proj_hidden_dim, output_dim=proj_dim
        )
        self.temperature = temperature
        self.gather_negatives = gather_negatives

    @classmethod
    def from_config(
        cls, config: Config, backbone: Backbone, augmentation: ViewAugmentation, data: ImageData
    ) -> SimCLR:
        """SimCLR with the ``model`` and ``method`` sections of ``config``."""
        method = config.method
        assert isinstance(method, SimCLRConfig)
        return cls(
            backbone,
            augmentation,
            proj_hidden_dim=config.model.proj_hidden_dim or backbone.feature_dim,
            proj_dim=config.model.proj_dim,
            temperature=method.temperature,
            gather_negatives=method.gather_negatives,
        )

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> MethodOutput:
        """Per-sample NT-Xent of a uint8 batch (B, C, H, W), with both views' features.

        Labels are not used (self-supervised); the argument keeps one interface for all methods.
        """
        view_a, view_b = self.augmentation.two_views(images)
        features = self.backbone(torch.cat([view_a, view_b]))  # (2B, D): views a, then b
        projections = self.projection_head(features)
        z_a, z_b = projections.chunk(2)  # (B, P) each; row i of both is sample i
        if self.gather_negatives and is_distributed():
            # negatives from every rank: the global batch is each rank's rows in rank order,
            # so this rank's anchors are rows offset..offset+B-1 of all_a and all_b; ranks may
            # hold different B (the last, uneven batch), hence the gathered sizes
            sizes = gathered_sizes(len(z_a), device=z_a.device)
            all_a, offset = gather_rows_with_grad(z_a, sizes)
            all_b, _ = gather_rows_with_grad(z_b, sizes)
            per_view = nt_xent_per_view(z_a, z_b, self.temperature, all_a, all_b, offset)
        else:
            per_view = nt_xent_per_view(z_a, z_b, temperature=self.temperature)
        batch = images.shape[0]
        return MethodOutput(
            loss=(per_view[0] + per_view[1]) / 2,  # nt_xent_per_sample
            view_losses=per_view.detach(),
            features=features.detach().view(2, batch, -1),
            projections=projections.detach().view(2, batch, -1),
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
