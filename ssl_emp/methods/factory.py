"""Build the configured method around a backbone."""

from __future__ import annotations

from ssl_emp.augment import build_eval_transform, build_view_augmentation
from ssl_emp.config import Config
from ssl_emp.data.dataset import ImageData
from ssl_emp.methods.base import Method
from ssl_emp.methods.moco import MoCo
from ssl_emp.methods.simclr import SimCLR
from ssl_emp.methods.supervised import Supervised
from ssl_emp.models.backbones import build_backbone


def build_method(config: Config, data: ImageData) -> Method:
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
    method = config.method
    hidden_dim = config.model.proj_hidden_dim or backbone.feature_dim
    if method.name == "supervised":
        size = config.augment.image_size or data.image_size
        eval_transform = build_eval_transform(size, data.image_size, data.mean, data.std)
        return Supervised(backbone, augmentation, eval_transform, num_classes=data.num_classes)
    if method.name == "moco":
        return MoCo(
            backbone,
            augmentation,
            proj_hidden_dim=hidden_dim,
            proj_dim=config.model.proj_dim,
            temperature=method.temperature,
            queue_size=method.queue_size,
            momentum=method.momentum,
            symmetric=method.symmetric,
            bn_splits=method.bn_splits,
        )
    return SimCLR(
        backbone,
        augmentation,
        proj_hidden_dim=hidden_dim,
        proj_dim=config.model.proj_dim,
        temperature=method.temperature,
        gather_negatives=method.gather_negatives,
    )
