"""MoCo v2: a momentum key encoder, a queue of negatives, and a per-sample InfoNCE loss."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from lightly.models.modules import MoCoProjectionHead
from torch import nn
from torch.func import functional_call

from ssl_emp.collectives import all_gather_rows
from ssl_emp.config.schema import MethodConfig, option
from ssl_emp.data.augment import ViewAugmentation
from ssl_emp.methods.base import (
    FeatureLayer,
    MethodOutput,
    embed_two_views,
    projection_head_export,
)
from ssl_emp.methods.losses import info_nce_per_sample
from ssl_emp.methods.momentum import MomentumMethod, frozen_copy
from ssl_emp.methods.queue import KeyQueue
from ssl_emp.models.backbones import Backbone

if TYPE_CHECKING:
    from ssl_emp.config import Config
    from ssl_emp.data.dataset import ImageData


def chunked(
    module: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    splits: int,
    fixed_calls: bool = False,
) -> torch.Tensor:
    """``module`` applied to ``splits`` chunks of the batch: each chunk gets its own BN stats.

    By default a batch smaller than ``2 * splits`` is encoded whole. With ``fixed_calls`` the
    module is always called exactly ``splits`` times (chunks may hold one sample), so the
    number of calls does not depend on the batch size: SyncBatchNorm runs one collective per
    call, and ranks whose shards differ in size must make the same number of calls.
    """
    if splits <= 1 or (not fixed_calls and len(inputs) < 2 * splits):
        return module(inputs)
    if fixed_calls and len(inputs) < splits:
        raise ValueError(f"{len(inputs)} samples cannot fill {splits} BN groups")
    return torch.cat([module(chunk) for chunk in torch.tensor_split(inputs, splits)])


@torch.no_grad()
def without_side_effects(module: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """``module(inputs)`` in its current mode, no gradient, its buffers left untouched.

    The module runs on copies of its buffers (``torch.func.functional_call``): in training
    mode batch norm normalises with the batch's statistics as usual, but its running
    statistics are not updated.
    """
    state = {name: buffer.clone() for name, buffer in module.named_buffers()}
    state.update(dict(module.named_parameters()))
    outputs: torch.Tensor = functional_call(module, state, (inputs,))
    return outputs


@dataclass
class MoCoConfig(MethodConfig):
    """MoCo v2's keys (``method.*``)."""

    temperature: float = option(0.2, "softmax temperature tau of InfoNCE", gt=0.0)
    queue_size: int = option(4096, "number of keys in the queue of negatives", ge=1)
    momentum: float = option(
        0.99, "start value of the key encoder's momentum (cosine schedule to 1)", ge=0.0, le=1.0
    )
    symmetric: bool = option(False, "average the loss over both view orders")
    bn_splits: int = option(
        4,
        "batch-norm groups; queries and shuffled keys are encoded in this many chunks so "
        "their BN statistics differ (single-device shuffle-BN)",
        ge=1,
    )


class MoCo(MomentumMethod):
    """MoCo v2 (Chen et al., 2020) with per-sample losses.

    Args:
        backbone: online encoder.
        augmentation: view pipeline (the ``mocov2`` preset).
        proj_hidden_dim: hidden width of lightly's MoCo projection head.
        proj_dim: key/query dimension.
        temperature: InfoNCE temperature.
        queue_size: number of queued negative keys.
        momentum: base momentum m of the key encoder, raised to 1 on a cosine schedule.
        symmetric: also use (view b -> query, view a -> key) and average.
        bn_splits: BN groups for the single-device shuffle-BN (1 = off).
        fixed_bn_calls: always encode in exactly ``bn_splits`` groups (needed with
            SyncBatchNorm, whose collectives must match across ranks).

    A step changes the momentum encoder and the queue only when the trainer accepts it
    (:meth:`commit_step`), so a skipped step leaves them as they were.
    """

    name: ClassVar[str] = "moco"
    config_class: ClassVar[type[MethodConfig]] = MoCoConfig

    def __init__(
        self,
        backbone: Backbone,
        augmentation: ViewAugmentation,
        proj_hidden_dim: int,
        proj_dim: int,
        temperature: float,
        queue_size: int,
        momentum: float,
        symmetric: bool,
        bn_splits: int,
        fixed_bn_calls: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.augmentation = augmentation
        self.projection_dim = proj_dim
        self.head_dims = (backbone.feature_dim, proj_hidden_dim, proj_dim)
        self.projection_head = MoCoProjectionHead(
            input_dim=backbone.feature_dim, hidden_dim=proj_hidden_dim, output_dim=proj_dim
        )
        self.key_backbone = frozen_copy(backbone)
        self.key_head = frozen_copy(self.projection_head)
        self.queue = KeyQueue(queue_size, proj_dim)
        self.temperature = temperature
        self.init_momentum(momentum)
        self.symmetric = symmetric
        self.bn_splits = bn_splits
        self.fixed_bn_calls = fixed_bn_calls
        self.pending_keys: torch.Tensor | None = None

    @classmethod
    def from_config(
        cls, config: Config, backbone: Backbone, augmentation: ViewAugmentation, data: ImageData
    ) -> MoCo:
        """MoCo v2 with the ``model`` and ``method`` sections of ``config``."""
        method = config.method
        assert isinstance(method, MoCoConfig)
        return cls(
            backbone,
            augmentation,
            proj_hidden_dim=config.model.proj_hidden_dim or backbone.feature_dim,
            proj_dim=config.model.proj_dim,
            temperature=method.temperature,
            queue_size=method.queue_size,
            momentum=method.momentum,
            symmetric=method.symmetric,
            bn_splits=method.bn_splits,
            fixed_bn_calls=config.train.sync_bn,
        )

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """The key encoder follows the online backbone and head."""
        return [(self.backbone, self.key_backbone), (self.projection_head, self.key_head)]

    def _encode(
        self, module: Callable[[torch.Tensor], torch.Tensor], views: torch.Tensor
    ) -> torch.Tensor:
        return chunked(module, views, self.bn_splits, fixed_calls=self.fixed_bn_calls)

    @torch.no_grad()
    def encode_keys(self, views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Key-encoder features and keys of ``views``, encoded in shuffled BN groups."""
        order = torch.randperm(len(views), device=views.device)
        inverse = torch.argsort(order)
        features = self._encode(self.key_backbone, views[order])
        keys = self.key_head(features)
        return features[inverse], keys[inverse]

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> MethodOutput:
        """Per-sample InfoNCE of a uint8 batch; the keys wait in ``pending_keys`` until
        :meth:`commit_step` queues them.

        The returned features and projections (for the memory term) come from the online
        encoder for both views: without ``symmetric`` view b's are computed without gradient
        and without touching any buffer (:func:`without_side_effects`).
        """
        view_a, view_b = self.augmentation.two_views(images)
        negatives = self.queue.negatives()
        features_a = self._encode(self.backbone, view_a)
        queries_a = self.projection_head(features_a)
        _, keys_b = self.encode_keys(view_b)
        loss = info_nce_per_sample(queries_a, keys_b, negatives, self.temperature)
        view_losses = None
        if self.symmetric:
            features_b = self._encode(self.backbone, view_b)
            queries_b = self.projection_head(features_b)
            _, keys_a = self.encode_keys(view_a)
            loss_ba = info_nce_per_sample(queries_b, keys_a, negatives, self.temperature)
            view_losses = torch.stack([loss.detach(), loss_ba.detach()])
            loss = (loss + loss_ba) / 2
        else:
            features_b = self._encode(partial(without_side_effects, self.backbone), view_b)
            queries_b = without_side_effects(self.projection_head, features_b)
        self.pending_keys = keys_b.detach()
        return MethodOutput(
            loss=loss,
            features=torch.stack([features_a.detach(), features_b.detach()]),
            projections=torch.stack([queries_a.detach(), queries_b.detach()]),
            view_losses=view_losses,
        )

    @torch.no_grad()
    def commit_step(self) -> None:
        """After an accepted optimizer step: the momentum update of the key encoder (towards
        the new online weights, with this step's momentum) and the step's keys into the queue
        (every rank queues the global batch)."""
        super().commit_step()
        if self.pending_keys is not None:
            self.queue.enqueue(all_gather_rows(self.pending_keys))
            self.pending_keys = None

    def export_head(self) -> tuple[nn.Module, dict[str, Any]]:
        """The projection head (``ssl-emp export --head``)."""
        return projection_head_export(self.projection_head, *self.head_dims)

    @torch.no_grad()
    def embed(self, images: torch.Tensor, layer: FeatureLayer = "backbone") -> torch.Tensor:
        """Online-encoder features (or queries) of two fresh views, shape (2, B, D).

        Both views go through the online backbone (never the momentum encoder), in one pass
        without BN groups; the queue and the key encoder are left untouched.
        """
        return embed_two_views(
            images, self.augmentation, self.backbone, self.projection_head, layer
        )
