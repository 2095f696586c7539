"""Build the configured method around a backbone."""

from __future__ import annotations

from torch import nn

from ssl_emp.augment import build_view_augmentation
from ssl_emp.config import Config
from ssl_emp.data.dataset import ImageData
from ssl_emp.methods.simclr import SimCLR
from ssl_emp.models.backbones import build_backbone


def build_method(config: Config, data: ImageData) -> nn.Module:
    """The ``method.name`` model (backbone, head, views) for images like ``data``."""
    backbone = build_backbone(
        config.model.backbone,
        in_channels=data.channels,
        cifar_stem=config.model.cifar_stem,
        width=config.model.width,
        channels_last=config.model.channels_last,
    )
    augmentation = build_view_augmentation(
        config.augment,
        channels=data.channels,
        source_size=data.image_size,
        mean=data.mean,
        std=data.std,
    )
    return SimCLR(
        backbone,
        augmentation,
        proj_hidden_dim=config.model.proj_hidden_dim or backbone.feature_dim,
        proj_dim=config.model.proj_dim,
        temperature=config.method.temperature,
    )
