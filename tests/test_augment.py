"""kornia view pipelines: shapes, normalisation, independence of views, seeding, presets."""

import kornia.augmentation as K
import pytest
import torch

from ssl_emp.config import AugmentConfig
from ssl_emp.data.augment import build_eval_transform, build_view_augmentation


def _images(channels: int, size: int, count: int = 8) -> torch.Tensor:
    return torch.randint(
        0,
        256,
        (count, channels, size, size),
        dtype=torch.uint8,
        generator=torch.Generator().manual_seed(size),
    )


@pytest.mark.parametrize("preset", ["simclr", "mocov2"])
@pytest.mark.parametrize(("channels", "size"), [(1, 28), (3, 32), (3, 96), (1, 224)])
def test_views_have_requested_shape(preset: str, channels: int, size: int) -> None:
    augmentation = build_view_augmentation(
        AugmentConfig(preset=preset), channels, size, mean=(0.5,) * channels, std=(0.25,) * channels
    )
    view_a, view_b = augmentation.two_views(_images(channels, size, count=4))
    assert view_a.shape == view_b.shape == (4, channels, size, size)
    assert view_a.dtype == torch.float32
    assert not torch.equal(view_a, view_b)
    has_blur = any(isinstance(step, K.RandomGaussianBlur) for step in augmentation.pipeline)
    assert has_blur == (size >= 64)
    has_gray = any(isinstance(step, K.RandomGrayscale) for step in augmentation.pipeline)
    assert has_gray == (channels == 3)


def test_resizes_to_image_size() -> None:
    augmentation = build_view_augmentation(
        AugmentConfig(image_size=16), 3, 32, mean=(0.5,) * 3, std=(0.5,) * 3
    )
    assert augmentation(_images(3, 32)).shape == (8, 3, 16, 16)


def test_seeded_views_repeat() -> None:
    augmentation = build_view_augmentation(AugmentConfig(), 3, 32, (0.5,) * 3, (0.5,) * 3)
    images = _images(3, 32)
    torch.manual_seed(5)
    first = augmentation(images)
    torch.manual_seed(5)
    assert torch.equal(first, augmentation(images))


def test_eval_transform_only_normalises() -> None:
    transform = build_eval_transform(28, 28, mean=(0.2,), std=(0.5,))
    images = _images(1, 28)
    expected = (images.float() / 255 - 0.2) / 0.5
    assert torch.allclose(transform(images), expected, atol=1e-6)
