"""Encoders that map images to feature vectors (the "hidden layer of the base encoder").

``resnet18`` and ``resnet50`` are torchvision's, with an optional CIFAR stem (3x3 stride-1
first convolution, no max-pool) for small images. ``resnet_small`` is a ResNet-10 built from
torchvision's ``BasicBlock`` with a configurable base width, for CPU work.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock, conv1x1

# torch 2.14's CPU backward of a channels-last 1x1 convolution with stride 2 and fewer than 8
# input channels corrupts the heap ("double free or corruption", seen on AVX2 machines, with
# one thread and with two); such networks stay in the default memory format.
NARROW_STRIDED_CONV_CHANNELS = 8


def channels_last_is_safe(body: nn.Module) -> bool:
    """Whether ``body`` avoids the channels-last layer that crashes torch's CPU backward: a
    1x1 convolution with a stride above 1 and fewer than 8 input channels (resnet_small's
    downsampling shortcut at ``model.width`` < 8)."""
    return not any(
        isinstance(module, nn.Conv2d)
        and module.kernel_size == (1, 1)
        and max(module.stride) > 1
        and module.in_channels < NARROW_STRIDED_CONV_CHANNELS
        for module in body.modules()
    )


class Backbone(nn.Module):
    """A feature extractor with a known output size.

    Args:
        body: module mapping (N, C, H, W) images to (N, feature_dim) features.
        feature_dim: size of the feature vector.
        channels_last: keep weights and inputs in the channels-last memory format, which
            makes the convolutions markedly faster on CPUs and on tensor-core GPUs; ignored
            (the default format is kept) where :func:`channels_last_is_safe` says no.
    """

    def __init__(self, body: nn.Module, feature_dim: int, channels_last: bool = True) -> None:
        super().__init__()
        channels_last = channels_last and channels_last_is_safe(body)
        self.body = body.to(memory_format=torch.channels_last) if channels_last else body
        self.feature_dim = feature_dim
        self.channels_last = channels_last

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled features of shape (N, feature_dim)."""
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.body(images)


def _stem(in_channels: int, width: int, cifar_stem: bool) -> list[nn.Module]:
    if cifar_stem:
        conv = nn.Conv2d(in_channels, width, kernel_size=3, stride=1, padding=1, bias=False)
        return [conv, nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
    conv = nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False)
    pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    return [conv, nn.BatchNorm2d(width), nn.ReLU(inplace=True), pool]


def _stage(in_planes: int, planes: int, stride: int) -> nn.Module:
    downsample = None
    if stride != 1 or in_planes != planes:
        downsample = nn.Sequential(conv1x1(in_planes, planes, stride), nn.BatchNorm2d(planes))
    return BasicBlock(in_planes, planes, stride=stride, downsample=downsample)


def resnet_small(
    in_channels: int, width: int, cifar_stem: bool, channels_last: bool = True
) -> Backbone:
    """ResNet-10: one BasicBlock per stage, widths w, 2w, 4w, 8w; features of size 8w."""
    widths = [width, 2 * width, 4 * width, 8 * width]
    layers = _stem(in_channels, width, cifar_stem)
    in_planes = width
    for index, planes in enumerate(widths):
        layers.append(_stage(in_planes, planes, stride=1 if index == 0 else 2))
        in_planes = planes
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return Backbone(nn.Sequential(*layers), feature_dim=widths[-1], channels_last=channels_last)


def torchvision_resnet(
    name: str, in_channels: int, cifar_stem: bool, channels_last: bool = True
) -> Backbone:
    """torchvision's ResNet-18/50 without its classifier, optionally with the CIFAR stem."""
    model = getattr(torchvision.models, name)(weights=None)
    if cifar_stem or in_channels != 3:
        kernel, stride, padding = (3, 1, 1) if cifar_stem else (7, 2, 3)
        model.conv1 = nn.Conv2d(
            in_channels, 64, kernel_size=kernel, stride=stride, padding=padding, bias=False
        )
    if cifar_stem:
        model.maxpool = nn.Identity()
    feature_dim = model.fc.in_features
    model.fc = nn.Identity()
    return Backbone(model, feature_dim=feature_dim, channels_last=channels_last)


def build_backbone(
    name: str,
    in_channels: int,
    cifar_stem: bool,
    width: int = 16,
    channels_last: bool = True,
) -> Backbone:
    """The backbone called ``name`` for images with ``in_channels`` channels.

    Args:
        name: ``resnet18``, ``resnet50`` or ``resnet_small``.
        in_channels: 1 for grayscale, 3 for RGB.
        cifar_stem: use the 3x3 stride-1 stem without max-pool (for small images).
        width: base width of ``resnet_small`` (ignored by the torchvision models).
        channels_last: use the channels-last memory format (see :class:`Backbone`).
    """
    if name == "resnet_small":
        return resnet_small(in_channels, width, cifar_stem, channels_last)
    return torchvision_resnet(name, in_channels, cifar_stem, channels_last)
