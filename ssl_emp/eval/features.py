"""Frozen-feature extraction (no augmentation), shared by the linear probe and kNN."""

from __future__ import annotations

import torch
from torch import nn

from ssl_emp.data import ImageData
from ssl_emp.data.augment import build_eval_transform


@torch.no_grad()
def extract_features(
    backbone: nn.Module,
    data: ImageData,
    image_size: int,
    batch_size: int = 512,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Backbone features of every sample of ``data`` in eval mode, shape (N, D), float32.

    Args:
        backbone: the encoder; put in eval mode for the pass and restored afterwards.
        data: images to embed (any device; moved batch by batch).
        image_size: side length the backbone was trained on (resized if it differs).
        batch_size: images per forward pass.
        device: where to run the backbone (default: where its parameters are).
    """
    device = device or next(backbone.parameters()).device
    transform = build_eval_transform(
        image_size, source_size=data.image_size, mean=data.mean, std=data.std
    ).to(device)
    was_training = backbone.training
    backbone.eval()
    chunks = []
    for start in range(0, len(data), batch_size):
        images = data.images[start : start + batch_size].to(device)
        chunks.append(backbone(transform(images)).float())
    backbone.train(was_training)
    return torch.cat(chunks)
