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
    has_blur = any(isinstance(step, K.RandomGaussianBlur) for step in augmentation.pipelines[0])
    assert has_blur == (size >= 64)
    has_gray = any(isinstance(step, K.RandomGrayscale) for step in augmentation.pipelines[0])
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


def test_byol_views_differ_as_in_its_paper() -> None:
    """BYOL's two views: blur always in the first and rarely in the second, solarisation
    only in the second (lightly's BYOLView1Transform / BYOLView2Transform)."""
    config = AugmentConfig(preset="byol", blur=True)
    rgb = (0.5, 0.5, 0.5)
    augmentation = build_view_augmentation(config, channels=3, source_size=64, mean=rgb, std=rgb)
    first, second = augmentation.pipelines

    def probability(pipeline, kind) -> float:
        return sum(step.p for step in pipeline if isinstance(step, kind))

    assert probability(first, K.RandomGaussianBlur) == 1.0
    assert probability(second, K.RandomGaussianBlur) == pytest.approx(0.1)
    assert probability(first, K.RandomSolarize) == 0.0
    assert probability(second, K.RandomSolarize) == pytest.approx(0.2)
    images = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    view_a, view_b = augmentation.two_views(images)
    assert view_a.shape == view_b.shape == (4, 3, 64, 64)


def test_one_pipeline_serves_both_views_in_order() -> None:
    """A preset with one pipeline draws view 1 then view 2 from it, as two calls would."""
    augmentation = build_view_augmentation(
        AugmentConfig(preset="simclr"), channels=1, source_size=28, mean=(0.3,), std=(0.3,)
    )
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    torch.manual_seed(5)
    pair = augmentation.two_views(images)
    torch.manual_seed(5)
    assert torch.equal(pair[0], augmentation(images)) and torch.equal(pair[1], augmentation(images))
