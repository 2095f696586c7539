"""Backbones (torchvision ResNets) and projection heads (lightly)."""

from ssl_emp.models.backbones import build_backbone

__all__ = ["build_backbone"]
