"""Encoders that map images to feature vectors (the "hidden layer of the base encoder").

Any classification model of torchvision's registry (``resnet18``, ``wide_resnet50_2``,
``convnext_tiny``, ...) without its classifier, with an optional small-image stem (3x3
stride-1 first convolution, no max-pool); ``resnet_small`` is a ResNet-10 built from
torchvision's ``BasicBlock`` with a configurable base width, for CPU work.
"""

from __future__ import annotations

import difflib
from typing import Any

import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock, conv1x1

from ssl_emp.errors import UserInputError

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


# The max-pool that follows the stem, where a torchvision family has one: ResNet, ResNeXt,
# Wide ResNet and ShuffleNet V2 ("maxpool"), DenseNet ("features.pool0"), GoogLeNet
# ("maxpool1"). The small-image stem removes it with the stem's stride.
STEM_POOLS = ("maxpool", "features.pool0", "maxpool1")

# Builder options some families need to act as plain feature extractors: without them
# GoogLeNet and Inception v3 return auxiliary outputs in training mode (and warn about their
# initialisation on every build).
BUILDER_OPTIONS: dict[str, dict[str, bool]] = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}


def torchvision_names() -> list[str]:
    """The classification models of torchvision's registry (``resnet34``, ``convnext_tiny``...)."""
    return torchvision.models.list_models(module=torchvision.models)


def check_backbone_name(name: str) -> None:
    """Refuse a ``model.backbone`` that is neither ``resnet_small`` nor a torchvision model.

    Raises:
        UserInputError: naming the closest torchvision names.
    """
    if name == "resnet_small" or name in torchvision_names():
        return
    close = difflib.get_close_matches(name, ["resnet_small", *torchvision_names()], n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UserInputError(
        f"model.backbone={name!r} is neither resnet_small nor a torchvision classification "
        f'model; {hint}list them with: python -c "import torchvision; '
        f'print(torchvision.models.list_models(module=torchvision.models))"'
    )


def _submodule_path(model: nn.Module, wanted: type[nn.Module], last: bool) -> str | None:
    """The dotted name of the first (or last) submodule of type ``wanted``, in registration
    order, which for torchvision's classifiers is the order of the forward pass."""
    names = [name for name, module in model.named_modules() if isinstance(module, wanted)]
    if not names:
        return None
    return names[-1] if last else names[0]


def _replace(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, child = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, child, module)


def _submodule_or_none(model: nn.Module, path: str) -> nn.Module | None:
    """The submodule at dotted ``path``, or None where the model has none."""
    try:
        return model.get_submodule(path)
    except AttributeError:
        return None


def _adapted_stem(conv: nn.Conv2d, in_channels: int, small_images: bool) -> nn.Conv2d:
    """The first convolution for ``in_channels`` inputs; for small images a 3x3 stride-1 one
    (what ``cifar_stem`` does to a ResNet), so 28-64 px inputs are not shrunk 4-fold before
    the first block."""
    kernel: Any = conv.kernel_size  # torch types these as tuple[int, ...]
    stride: Any = conv.stride
    padding: Any = conv.padding
    if small_images and max(conv.stride) > 1:
        kernel, stride, padding = (3, 3), (1, 1), (1, 1)
    return nn.Conv2d(
        in_channels,
        conv.out_channels,
        kernel_size=kernel,
        stride=stride,
        padding=padding,
        groups=1,
        bias=conv.bias is not None,
    )


def torchvision_backbone(
    name: str,
    in_channels: int,
    cifar_stem: bool,
    channels_last: bool = True,
    image_size: int | None = None,
) -> Backbone:
    """Any torchvision classification model without its classifier (its last ``nn.Linear``
    becomes the identity, so the features are that layer's inputs).

    With ``cifar_stem`` the first convolution becomes 3x3 stride 1 and the max-pool after it
    (:data:`STEM_POOLS`) is removed; a grayscale input changes only the first convolution's
    input channels. Vision transformers keep their patch embedding (changing its stride
    would change the number of patches) and are built for ``image_size``.

    Raises:
        UserInputError: a model without a final linear layer (SqueezeNet) or one that cannot
            take ``image_size`` inputs (ViT at a size that is not a multiple of its patch).
    """
    options: dict[str, object] = dict(BUILDER_OPTIONS.get(name, {}))
    transformer = name.startswith("vit_")
    if transformer and image_size is not None:
        options["image_size"] = image_size
    try:
        model = torchvision.models.get_model(name, weights=None, **options)
    except AssertionError as error:  # ViT checks the size against its patch
        raise UserInputError(
            f"model.backbone={name} cannot take {image_size} px images ({error}); set "
            "augment.image_size to a multiple of its patch size"
        ) from None
    stem = _submodule_path(model, nn.Conv2d, last=False)
    if stem is not None and (cifar_stem or in_channels != 3):
        conv = model.get_submodule(stem)
        assert isinstance(conv, nn.Conv2d)
        _replace(model, stem, _adapted_stem(conv, in_channels, cifar_stem and not transformer))
    if cifar_stem:
        for pool in STEM_POOLS:
            if isinstance(_submodule_or_none(model, pool), nn.MaxPool2d):
                _replace(model, pool, nn.Identity())
    classifier = _submodule_path(model, nn.Linear, last=True)
    if classifier is None:
        raise UserInputError(
            f"model.backbone={name} has no final linear layer to take its features from; "
            "pick another torchvision model"
        )
    linear = model.get_submodule(classifier)
    assert isinstance(linear, nn.Linear)
    _replace(model, classifier, nn.Identity())
    backbone = Backbone(model, feature_dim=linear.in_features, channels_last=channels_last)
    if image_size is not None:
        check_input_size(backbone, name, in_channels, image_size, cifar_stem)
    return backbone


def check_input_size(
    backbone: Backbone, name: str, in_channels: int, image_size: int, cifar_stem: bool
) -> None:
    """Run one image through ``backbone`` (eval mode, no gradient: no statistic or random
    state moves) so an input too small for the architecture fails here, in one line, rather
    than inside the first training step."""
    training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            features = backbone(torch.zeros(1, in_channels, image_size, image_size))
    except RuntimeError as error:
        message = str(error).splitlines()[0]
        fix = "set augment.image_size larger" + ("" if cifar_stem else " or model.cifar_stem=true")
        raise UserInputError(
            f"model.backbone={name} cannot take {image_size} px images ({message}); {fix}"
        ) from None
    finally:
        backbone.train(training)
    if features.shape != (1, backbone.feature_dim):
        raise UserInputError(
            f"model.backbone={name} gives features of shape {tuple(features.shape)[1:]}, not "
            f"({backbone.feature_dim},); pick another torchvision model"
        )


def build_backbone(
    name: str,
    in_channels: int,
    cifar_stem: bool,
    width: int = 16,
    channels_last: bool = True,
    image_size: int | None = None,
) -> Backbone:
    """The backbone called ``name`` for images with ``in_channels`` channels.

    Args:
        name: ``resnet_small`` or a torchvision classification model (:func:`torchvision_names`).
        in_channels: 1 for grayscale, 3 for RGB.
        cifar_stem: use the 3x3 stride-1 stem without max-pool (for small images).
        width: base width of ``resnet_small`` (ignored by the torchvision models).
        channels_last: use the channels-last memory format (see :class:`Backbone`).
        image_size: side of the training images; torchvision models are checked against it
            (one forward pass) and vision transformers are built for it.

    Raises:
        UserInputError: an unknown name, or a model that cannot take such images.
    """
    check_backbone_name(name)
    if name == "resnet_small":
        return resnet_small(in_channels, width, cifar_stem, channels_last)
    return torchvision_backbone(name, in_channels, cifar_stem, channels_last, image_size)
