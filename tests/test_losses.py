"""Per-sample NT-Xent against lightly's NTXentLoss and a hand-written loop."""

import math

import pytest
import torch
import torch.nn.functional as F
from lightly.loss import NTXentLoss

from ssl_emp.methods.losses import (
    cross_entropy_per_sample,
    info_nce_per_sample,
    nt_xent_per_sample,
)
from ssl_emp.pruning import batch_memory, supervised_memory


@pytest.mark.parametrize("batch", [2, 7, 32, 128])
@pytest.mark.parametrize("temperature", [0.07, 0.2, 0.5, 1.0])
def test_batch_mean_equals_lightly(batch: int, temperature: float) -> None:
    generator = torch.Generator().manual_seed(batch * 100 + int(temperature * 100))
    z_a = torch.randn(batch, 24, generator=generator)
    z_b = torch.randn(batch, 24, generator=generator)
    ours = nt_xent_per_sample(z_a, z_b, temperature=temperature)
    oracle = NTXentLoss(temperature=temperature)(z_a, z_b)
    assert ours.shape == (batch,)
    assert torch.allclose(ours.mean(), oracle, atol=1e-5, rtol=1e-5)


def _hand_loss(z_a: torch.Tensor, z_b: torch.Tensor, tau: float) -> list[float]:
    views = [F.normalize(v, dim=0) for v in torch.cat([z_a, z_b])]
    batch = len(z_a)

    def ce(anchor: int, positive: int) -> float:
        others = [j for j in range(2 * batch) if j != anchor]
        logits = [float(views[anchor] @ views[j]) / tau for j in others]
        positive_logit = float(views[anchor] @ views[positive]) / tau
        return -positive_logit + math.log(sum(math.exp(x) for x in logits))

    return [(ce(i, i + batch) + ce(i + batch, i)) / 2 for i in range(batch)]


def test_each_sample_equals_hand_computation() -> None:
    generator = torch.Generator().manual_seed(3)
    z_a, z_b = torch.randn(4, 5, generator=generator), torch.randn(4, 5, generator=generator)
    ours = nt_xent_per_sample(z_a, z_b, temperature=0.3)
    assert torch.allclose(ours, torch.tensor(_hand_loss(z_a, z_b, 0.3)), atol=1e-5)


def test_identical_views_of_distinct_samples_give_low_loss() -> None:
    z = torch.eye(6) * 10
    assert nt_xent_per_sample(z, z, temperature=0.1).max() < 1e-3


def test_scores_are_float32_inside_autocast() -> None:
    # scores rank samples: bf16 autocast must not round them (CPU autocast stands in for CUDA)
    generator = torch.Generator().manual_seed(0)
    z_a, z_b = torch.randn(2, 64, 32, generator=generator)
    queue = torch.nn.functional.normalize(torch.randn(128, 32, generator=generator), dim=1)
    logits, labels = torch.randn(64, 10, generator=generator), torch.arange(64) % 10
    features = torch.randn(2, 64, 32, generator=generator)
    scores = {
        "nt_xent": lambda: nt_xent_per_sample(z_a, z_b, temperature=0.2),
        "info_nce": lambda: info_nce_per_sample(z_a, z_b, queue, temperature=0.2),
        "cross_entropy": lambda: cross_entropy_per_sample(logits, labels),
        "batch_memory": lambda: batch_memory(features, tau=0.1),
        "supervised_memory": lambda: supervised_memory(logits),
    }
    for name, compute in scores.items():
        expected = compute()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = compute()
        assert got.dtype == torch.float32, name
        assert torch.equal(got, expected), name


@pytest.mark.parametrize("world", [2, 3])
def test_gathered_nt_xent_equals_the_single_process_loss_over_the_global_batch(world) -> None:
    # under torchrun each rank scores its strided shard against every rank's views
    generator = torch.Generator().manual_seed(world)
    all_a, all_b = torch.randn(2, 11, 8, generator=generator)
    expected = nt_xent_per_sample(all_a, all_b, temperature=0.3)
    sizes = [len(range(rank, 11, world)) for rank in range(world)]
    parts, offset = [], 0
    shards_a = [all_a[rank::world] for rank in range(world)]
    shards_b = [all_b[rank::world] for rank in range(world)]
    gathered_a, gathered_b = torch.cat(shards_a), torch.cat(shards_b)  # rank order
    for rank in range(world):
        parts.append(
            nt_xent_per_sample(
                shards_a[rank], shards_b[rank], 0.3, gathered_a, gathered_b, offset=offset
            )
        )
        offset += sizes[rank]
    order = torch.cat([torch.arange(11)[rank::world] for rank in range(world)])
    assert torch.allclose(torch.cat(parts), expected[order], atol=1e-6)
