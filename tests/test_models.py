"""Backbones: output sizes, CIFAR stem, grayscale input; SimCLR head from lightly."""

import pytest
import torch
import torchvision
from lightly.models.modules import SimCLRProjectionHead
from torch import nn

from ssl_emp.config import load_config
from ssl_emp.errors import UserInputError
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


def _torchvision_classifier_inputs(name: str) -> int:
    """The oracle for a backbone's feature size: the input width of the last linear layer of
    torchvision's own, unmodified model."""
    model = torchvision.models.get_model(name, weights=None)
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1].in_features


@pytest.mark.parametrize(
    ("name", "stem", "pool"),
    [
        ("resnet34", "conv1", "maxpool"),
        ("convnext_tiny", "features.0.0", None),
        ("mobilenet_v3_small", "features.0.0", None),
        ("densenet121", "features.conv0", "features.pool0"),
    ],
)
def test_any_torchvision_model_becomes_a_small_image_grayscale_backbone(
    name: str, stem: str, pool: str | None
) -> None:
    backbone = build_backbone(name, in_channels=1, cifar_stem=True, image_size=28)
    conv = backbone.body.get_submodule(stem)
    assert (conv.in_channels, conv.kernel_size, conv.stride) == (1, (3, 3), (1, 1))
    if pool is not None:
        assert isinstance(backbone.body.get_submodule(pool), nn.Identity)
    assert backbone.feature_dim == _torchvision_classifier_inputs(name)
    backbone.eval()
    assert backbone(torch.zeros(2, 1, 28, 28)).shape == (2, backbone.feature_dim)


def test_without_the_small_image_stem_only_the_input_channels_change() -> None:
    reference = torchvision.models.get_model("convnext_tiny", weights=None).features[0][0]
    backbone = build_backbone("convnext_tiny", in_channels=1, cifar_stem=False, image_size=64)
    conv = backbone.body.features[0][0]
    assert conv.in_channels == 1
    assert (conv.kernel_size, conv.stride) == (reference.kernel_size, reference.stride)


def test_a_misspelt_backbone_is_refused_when_the_config_loads() -> None:
    with pytest.raises(UserInputError, match="did you mean resnet_small"):
        load_config(None, ["model.backbone=resnet_smal"])
    assert load_config(None, ["model.backbone=wide_resnet50_2"]).model.backbone == "wide_resnet50_2"


@pytest.mark.parametrize(
    ("name", "size", "message"),
    [
        ("vgg11", 28, "vgg11 cannot take 28 px images .*; set augment.image_size larger$"),
        ("vit_b_16", 28, "multiple of its patch size"),
        ("squeezenet1_0", 32, "no final linear layer"),
    ],
)
def test_a_model_that_cannot_take_the_images_fails_in_one_line(
    name: str, size: int, message: str
) -> None:
    with pytest.raises(UserInputError, match=message):
        build_backbone(name, in_channels=3, cifar_stem=True, image_size=size)


def test_a_vision_transformer_is_built_for_the_image_size() -> None:
    backbone = build_backbone("vit_b_32", in_channels=3, cifar_stem=True, image_size=64)
    assert backbone.body.image_size == 64
    assert backbone.body.conv_proj.stride == (32, 32)  # the patch embedding is kept
    backbone.eval()
    assert backbone(torch.zeros(1, 3, 64, 64)).shape == (1, 768)
