"""The methods by name: the one registry from which ``method.name`` is checked, each method's
config section is found and the model of a run is built. Adding a method is its module and
one line here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ssl_emp.data.augment import build_view_augmentation
from ssl_emp.data.dataset import ImageData
from ssl_emp.methods.base import Method
from ssl_emp.methods.byol import BYOL
from ssl_emp.methods.moco import MoCo
from ssl_emp.methods.nnclr import NNCLR
from ssl_emp.methods.simclr import SimCLR
from ssl_emp.methods.simsiam import SimSiam
from ssl_emp.methods.supervised import Supervised
from ssl_emp.models.backbones import build_backbone

if TYPE_CHECKING:
    from ssl_emp.config import Config

METHODS: dict[str, type[Method]] = {
    method.name: method
    for method in (
        SimCLR,
        MoCo,
        BYOL,
        SimSiam,
        NNCLR,
        Supervised,
    )
}


def method_class(name: str) -> type[Method]:
    """The class registered as ``name`` (its capabilities are class attributes)."""
    return METHODS[name]


def build_method(config: Config, data: ImageData) -> Method:
    """The ``method.name`` model (backbone, head, views) for images like ``data``."""
    backbone = build_backbone(
        config.model.backbone,
        in_channels=data.channels,
        cifar_stem=config.model.cifar_stem,
        width=config.model.width,
        channels_last=config.model.channels_last,
        image_size=config.augment.image_size or data.image_size,
    )
    augmentation = build_view_augmentation(
        config.augment,
        channels=data.channels,
        source_size=data.image_size,
        mean=data.mean,
        std=data.std,
    )
    return METHODS[config.method.name].from_config(config, backbone, augmentation, data)
