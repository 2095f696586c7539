"""The usual lightly SimCLR loop, as the reference our benchmarks compare against.

A map-style dataset of PIL images, ``lightly.transforms.SimCLRTransform`` in a ``DataLoader``
with worker processes, the same model, ``lightly.loss.NTXentLoss`` and the same optimizer.
"""

from __future__ import annotations

import torch
from lightly.loss import NTXentLoss
from lightly.transforms import SimCLRTransform
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset


def fashion_mnist_transform(mean: list[float], std: list[float]) -> SimCLRTransform:
    """lightly's PIL SimCLR views configured like our Fashion-MNIST augmentation (28 px
    grayscale: no saturation, hue, grayscale step or blur)."""
    return SimCLRTransform(
        input_size=28,
        min_scale=0.2,
        cj_strength=0.5,
        cj_sat=0.0,
        cj_hue=0.0,
        random_gray_scale=0.0,
        gaussian_blur=0.0,
        normalize={"mean": mean, "std": std},
    )


class PilImages(Dataset):
    """uint8 (N, C, H, W) images served as PIL images through ``transform`` (lightly style)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        array = self.images[index].permute(1, 2, 0).numpy()
        image = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
        return self.transform(image), int(self.labels[index])


class ReferenceLoop:
    """One SimCLR training step per :meth:`step`, fed by a multi-worker DataLoader."""

    def __init__(
        self,
        dataset: Dataset,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        temperature: float,
        batch_size: int,
        workers: int,
        device: torch.device,
    ) -> None:
        self.model, self.optimizer, self.device = model, optimizer, device
        self.criterion = NTXentLoss(temperature=temperature)
        self.loader = DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=device.type == "cuda",
        )
        self.batches = iter(self.loader)

    def step(self) -> None:
        """Next batch (restarting the loader at the end), forward, NT-Xent, backward, step."""
        try:
            (view_a, view_b), _ = next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            (view_a, view_b), _ = next(self.batches)
        view_a = view_a.to(self.device, non_blocking=True)
        view_b = view_b.to(self.device, non_blocking=True)
        features = self.model.backbone(torch.cat([view_a, view_b]))
        z_a, z_b = self.model.projection_head(features).chunk(2)
        loss = self.criterion(z_a, z_b)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
