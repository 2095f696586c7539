"""Backbones: output sizes, CIFAR stem, grayscale input; SimCLR head from lightly."""

import pytest
import torch
from lightly.models.modules import SimCLRProjectionHead
from torch import nn

from ssl_emp.methods import build_method
from ssl_emp.models import build_backbone


@pytest.mark.parametrize(("name", "dim"), [("resnet18", 512), ("resnet50", 2048)])
def test_torchvision_resnets_with_cifar_stem(name: str, dim: int) -> None:
    backbone = build_backbone(name, in_channels=3, cifar_stem=True)
    body = backbone.body
    assert body.conv1.kernel_size == (3, 3) and body.conv1.stride == (1, 1)
    assert isinstance(body.maxpool, nn.Identity)
    backbone.eval()
    assert backbone(torch.zeros(2, 3, 32, 32)).shape == (2, dim)


def test_imagenet_stem_kept_without_cifar_stem() -> None:
    backbone = build_backbone("resnet18", in_channels=3, cifar_stem=False)
    assert backbone.body.conv1.kernel_size == (7, 7)
    assert isinstance(backbone.body.maxpool, nn.MaxPool2d)


def test_resnet_small_grayscale() -> None:
    backbone = build_backbone("resnet_small", in_channels=1, cifar_stem=True, width=8)
    assert backbone.feature_dim == 64
    backbone.eval()
    assert backbone(torch.zeros(3, 1, 28, 28)).shape == (3, 64)


def test_simclr_uses_lightly_head_and_returns_per_sample_loss(tiny_config) -> None:
    from ssl_emp.data import build_datasets

    train, _ = build_datasets(tiny_config.data, seed=0)
    model = build_method(tiny_config, train)
    assert isinstance(model.projection_head, SimCLRProjectionHead)
    output = model(train.images[:6])
    assert output.loss.shape == (6,)
    assert output.features.shape == (2, 6, model.backbone.feature_dim)


@pytest.mark.parametrize(
    ("width", "channels_last"), [(4, False), (7, False), (8, True), (16, True)]
)
def test_channels_last_is_skipped_where_torch_backward_corrupts_the_heap(
    width: int, channels_last: bool
) -> None:
    """resnet_small's downsampling shortcut is a 1x1 stride-2 convolution of ``width`` input
    channels; below 8 its channels-last CPU backward double-frees (torch 2.14, AVX2), so the
    backbone keeps the default format there and trains."""
    backbone = build_backbone("resnet_small", in_channels=1, cifar_stem=True, width=width)
    assert backbone.channels_last is channels_last
    shortcut = backbone.body[4].downsample[0]
    assert shortcut.kernel_size == (1, 1) and shortcut.stride == (2, 2)
    conv = backbone.body[4].conv1  # (2w, w, 3, 3): the two formats differ
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) is channels_last
    backbone(torch.randn(8, 1, 16, 16)).sum().backward()
