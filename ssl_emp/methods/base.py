"""The interface every training method implements, and what it hands back per batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from torch import nn

from ssl_emp.config.schema import MethodConfig
from ssl_emp.models.backbones import Backbone

if TYPE_CHECKING:
    from ssl_emp.config import Config
    from ssl_emp.data.augment import ViewAugmentation
    from ssl_emp.data.dataset import ImageData

# Training progress is quantised to 1/PROGRESS_RESOLUTION of an epoch by every schedule (the
# learning rate, MoCo's momentum), so a resumed run reproduces them exactly.
PROGRESS_RESOLUTION = 100_000

FeatureLayer = Literal["backbone", "projection"]


def projection_head_export(
    head: nn.Module, input_dim: int, hidden_dim: int, output_dim: int
) -> tuple[nn.Module, dict[str, Any]]:
    """A lightly projection head and its description for :meth:`Method.export_head`."""
    kwargs = {"input_dim": input_dim, "hidden_dim": hidden_dim, "output_dim": output_dim}
    return head, {"class": type(head).__name__, "kwargs": kwargs}


def embed_two_views(
    images: torch.Tensor,
    augmentation: ViewAugmentation,
    backbone: nn.Module,
    projection_head: nn.Module,
    layer: FeatureLayer,
) -> torch.Tensor:
    """Backbone (or projection) features of two fresh views of ``images``, in one pass; the
    :meth:`Method.embed` of every two-view method (nothing else of the method moves).

    Shape:
        images: (B, C, H, W) uint8 -> (2, B, D); the views are concatenated view-major, so
        row ``v * B + i`` of the pass is view ``v`` of sample ``i`` and ``view(2, B, -1)``
        puts the view first, as in :attr:`MethodOutput.features`.
    """
    view_a, view_b = augmentation.two_views(images)
    features: torch.Tensor = backbone(torch.cat([view_a, view_b]))
    if layer == "projection":
        features = projection_head(features)
    return features.view(2, images.shape[0], -1)


@dataclass
class MethodOutput:
    """Per-sample results of one training step.

    Attributes:
        loss: per-sample loss, shape (B,), differentiable.
        features: backbone features of the batch (detached), for memory terms and monitors;
            for two-view methods the features of both views, shape (2, B, D).
        projections: projection-head outputs (detached), same layout as ``features``.
        logits: class logits (detached) of supervised methods, shape (B, C).
        view_losses: the loss of each view order (detached), shape (2, B), where the loss is
            the mean of two (SimCLR's two anchors, symmetric MoCo); None otherwise.
    """

    loss: torch.Tensor
    features: torch.Tensor | None = None
    projections: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    view_losses: torch.Tensor | None = None

    def layer(self, name: FeatureLayer) -> torch.Tensor | None:
        """The detached features of ``name`` (``backbone`` or ``projection``)."""
        return self.projections if name == "projection" else self.features


class Method(nn.Module):
    """A training objective around a backbone: uint8 images (+ labels) -> per-sample losses.

    Subclasses set ``self.backbone`` and implement :meth:`forward` and :meth:`embed`.

    Attributes:
        name: the ``method.name`` it is registered under.
        config_class: its section of the config (``method.*``), validated when loaded.
        supervised: trains on labels (``ssl-emp train-supervised``), else self-supervised.
        two_views: each sample gives two augmented views per step.
        memory_estimator: the memory estimator the method always uses (``prediction`` for
            supervised methods), or None to use ``memory.estimator``.
    """

    backbone: Backbone
    name: ClassVar[str]
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    supervised: ClassVar[bool] = False
    two_views: ClassVar[bool] = True
    memory_estimator: ClassVar[str | None] = None
    projection_dim: int | None = None  # the projection head's output size (None: no head)

    @classmethod
    def from_config(
        cls, config: Config, backbone: Backbone, augmentation: ViewAugmentation, data: ImageData
    ) -> Method:
        """The method as ``config`` describes it, around ``backbone`` for images like ``data``."""
        raise NotImplementedError

    def feature_dim(self, layer: FeatureLayer) -> int:
        """The size of the features of ``layer`` (``backbone`` or ``projection``)."""
        if layer == "backbone":
            return self.backbone.feature_dim
        projections = self.projection_dim
        if projections is None:
            raise ValueError(f"{type(self).__name__} has no projection layer")
        return projections

    def export_head(self) -> tuple[nn.Module, dict[str, Any]] | None:
        """The module after the backbone that ``ssl-emp export --head`` stores (the
        projection head, the classifier), with the description that rebuilds it:
        ``{"class": NAME, "kwargs": {...}}``, NAME a module of ``lightly.models.modules`` or
        ``torch.nn`` (:func:`ssl_emp.models.portable.build_head`). None: no head to export."""
        return None

    def before_step(self, progress: float, epochs: int) -> None:
        """Hook called before each step with the training progress in epochs (default: none)."""

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> MethodOutput:
        """Per-sample losses of a uint8 batch (B, C, H, W) with its labels (B,).

        Changes no state beyond what autograd and batch norm do, so a step the trainer
        skips can be undone; updates that belong to an accepted step go in
        :meth:`commit_step`.
        """
        raise NotImplementedError

    def commit_step(self) -> None:
        """Called after an accepted optimizer step (default: nothing to do)."""

    def embed(self, images: torch.Tensor, layer: FeatureLayer = "backbone") -> torch.Tensor:
        """Features of freshly augmented views of a uint8 batch, without side effects.

        No loss, no queue or momentum update, no collective; for memory estimators that
        re-embed samples outside a training step. Call it in eval mode under ``no_grad``.

        Shape:
            images: (B, C, H, W) uint8 -> (V, B, D) with V views per sample.
        """
        raise NotImplementedError
