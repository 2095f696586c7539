"""NNCLR: NT-Xent whose positives are the nearest neighbours of each view's projection in a
support set of earlier projections; the support set is part of the model, so checkpoints carry
it, and under ``torchrun`` every rank adds the global batch to it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from lightly.models.modules import NNCLRPredictionHead, NNCLRProjectionHead
from torch import nn

from ssl_emp.collectives import (
    all_gather_rows,
    gather_rows_with_grad,
    gathered_sizes,
    is_distributed,
)
from ssl_emp.config.schema import MethodConfig, option
from ssl_emp.data.augment import ViewAugmentation
from ssl_emp.methods.base import (
    FeatureLayer,
    Method,
    MethodOutput,
    embed_two_views,
    projection_head_export,
)
from ssl_emp.methods.losses import nt_xent_per_sample
from ssl_emp.methods.queue import KeyQueue
from ssl_emp.models.backbones import Backbone

if TYPE_CHECKING:
    from ssl_emp.config import Config
    from ssl_emp.data.dataset import ImageData


@dataclass
class NNCLRConfig(MethodConfig):
    """NNCLR's keys (``method.*``)."""

    temperature: float = option(0.1, "softmax temperature tau of NT-Xent", gt=0.0)
    support_size: int = option(
        4096, "projections kept in the support set the nearest neighbours come from", ge=1
    )
    predictor_hidden_dim: int | None = option(
        None, "hidden width of the predictor (default: the projection head's)", ge=1
    )
    gather_negatives: bool = option(
        True, "under torchrun: use every rank's views as negatives (global batch)"
    )


def nearest_neighbours(queries: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """Each query's most similar row of ``support`` by cosine (the query itself when the
    support set is empty), without gradient.

    Shape:
        queries: (B, D); support: (M, D) -> (B, D).

    Example:
        >>> support = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> nearest_neighbours(torch.tensor([[0.2, 0.9], [3.0, 1.0]]), support).tolist()
        [[0.0, 1.0], [1.0, 0.0]]
    """
    queries = queries.detach()
    if len(support) == 0:
        return queries
    # (B, M) cosines between the normalised queries and support rows
    similarity = F.normalize(queries.float(), dim=1) @ F.normalize(support.float(), dim=1).T
    return support[similarity.argmax(dim=1)].to(queries.dtype)


class NNCLR(Method):
    """NNCLR (Dwibedi et al., 2021) with per-sample losses.

    Each view's projection z is replaced by its nearest neighbour in the support set, which
    is the positive of the other view's prediction p:
    ``l_i = (NT-Xent_i(nn(z_a), p_b) + NT-Xent_i(nn(z_b), p_a)) / 2``, whose batch mean is
    lightly's ``0.5 * (NTXentLoss(nn_z0, p1) + NTXentLoss(nn_z1, p0))``. After an accepted
    step the first views' projections of the global batch join the support set (as lightly's
    ``NNMemoryBankModule(update=True)`` adds z0); until it holds any, a projection is its
    own neighbour.

    Args:
        backbone: encoder.
        augmentation: the view pipeline(s).
        proj_hidden_dim: hidden width of the projection head.
        proj_dim: output size of the projection head and the predictor.
        predictor_hidden_dim: hidden width of the predictor.
        temperature: NT-Xent temperature.
        support_size: number of projections in the support set.
        gather_negatives: under torchrun, contrast against every rank's views.
    """

    name: ClassVar[str] = "nnclr"
    config_class: ClassVar[type[MethodConfig]] = NNCLRConfig

    def __init__(
        self,
        backbone: Backbone,
        augmentation: ViewAugmentation,
        proj_hidden_dim: int,
        proj_dim: int,
        predictor_hidden_dim: int,
        temperature: float,
        support_size: int,
        gather_negatives: bool = True,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.augmentation = augmentation
        self.projection_dim = proj_dim
        self.head_dims = (backbone.feature_dim, proj_hidden_dim, proj_dim)
        self.projection_head = NNCLRProjectionHead(backbone.feature_dim, proj_hidden_dim, proj_dim)
        self.prediction_head = NNCLRPredictionHead(proj_dim, predictor_hidden_dim, proj_dim)
        self.support = KeyQueue(support_size, proj_dim)  # buffers: saved in checkpoints
        self.temperature = temperature
        self.gather_negatives = gather_negatives
        self.pending_projections: torch.Tensor | None = None

    @classmethod
    def from_config(
        cls, config: Config, backbone: Backbone, augmentation: ViewAugmentation, data: ImageData
    ) -> NNCLR:
        """NNCLR with the ``model`` and ``method`` sections of ``config``."""
        method = config.method
        assert isinstance(method, NNCLRConfig)
        hidden = config.model.proj_hidden_dim or backbone.feature_dim
        return cls(
            backbone,
            augmentation,
            proj_hidden_dim=hidden,
            proj_dim=config.model.proj_dim,
            predictor_hidden_dim=method.predictor_hidden_dim or hidden,
            temperature=method.temperature,
            support_size=method.support_size,
            gather_negatives=method.gather_negatives,
        )

    def _nt_xent(self, anchors: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        """Per-sample NT-Xent of this rank's (anchor, positive) pairs, against every rank's
        views under torchrun (``gather_negatives``)."""
        if self.gather_negatives and is_distributed():
            sizes = gathered_sizes(len(anchors), device=anchors.device)
            all_anchors, offset = gather_rows_with_grad(anchors, sizes)
            all_positives, _ = gather_rows_with_grad(positives, sizes)
            return nt_xent_per_sample(
                anchors, positives, self.temperature, all_anchors, all_positives, offset
            )
        return nt_xent_per_sample(anchors, positives, temperature=self.temperature)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> MethodOutput:
        """Per-sample NNCLR loss of a uint8 batch (B, C, H, W); the first views' projections
        wait in ``pending_projections`` until :meth:`commit_step` adds them to the support
        set (labels are not used)."""
        view_a, view_b = self.augmentation.two_views(images)
        batch = images.shape[0]
        features = self.backbone(torch.cat([view_a, view_b]))  # (2B, D), view a's rows first
        projections = self.projection_head(features)
        predictions = self.prediction_head(projections)
        z_a, z_b = projections.chunk(2)
        p_a, p_b = predictions.chunk(2)
        support = self.support.negatives()
        nn_a, nn_b = nearest_neighbours(z_a, support), nearest_neighbours(z_b, support)
        # row 0: view a's neighbour against view b's prediction; row 1: the other order
        per_view = torch.stack([self._nt_xent(nn_a, p_b), self._nt_xent(nn_b, p_a)])
        self.pending_projections = z_a.detach()
        return MethodOutput(
            loss=(per_view[0] + per_view[1]) / 2,
            features=features.detach().view(2, batch, -1),
            projections=projections.detach().view(2, batch, -1),
            view_losses=per_view.detach(),
        )

    @torch.no_grad()
    def commit_step(self) -> None:
        """After an accepted optimizer step: the first views' projections of the global batch
        (every rank adds the same rows) join the support set."""
        if self.pending_projections is not None:
            self.support.enqueue(all_gather_rows(self.pending_projections))
            self.pending_projections = None

    def export_head(self) -> tuple[nn.Module, dict[str, Any]]:
        """The projection head (``ssl-emp export --head``)."""
        return projection_head_export(self.projection_head, *self.head_dims)

    @torch.no_grad()
    def embed(self, images: torch.Tensor, layer: FeatureLayer = "backbone") -> torch.Tensor:
        """Backbone (or projection) features of two fresh views, shape (2, B, D); the support
        set is left alone."""
        return embed_two_views(
            images, self.augmentation, self.backbone, self.projection_head, layer
        )
