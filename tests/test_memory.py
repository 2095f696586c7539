"""Memory terms against hand computations; the faiss bank against brute force in torch."""

import math

import pytest
import torch
import torch.nn.functional as F

from ssl_emp.neighbours import faiss_available, search
from ssl_emp.pruning import BankMemory, batch_memory, supervised_memory


def _entropy(probabilities: list[float]) -> float:
    return -sum(p * math.log(p) for p in probabilities if p > 0)


def test_supervised_memory_is_normalised_prediction_entropy() -> None:
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [10.0, 0.0, 0.0, 0.0], [1.0, 2.0, 0.5, -1.0]])
    memory = supervised_memory(logits)
    probabilities = torch.softmax(logits[2], dim=0).tolist()
    assert memory[0] == pytest.approx(1.0)
    assert memory[1] < 0.01
    assert memory[2] == pytest.approx(_entropy(probabilities) / math.log(4), abs=1e-6)
    raw = supervised_memory(logits, normalize="none")
    assert raw[0] == pytest.approx(math.log(4))


def test_batch_memory_equals_hand_computation() -> None:
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 3, 5, generator=generator)  # 2 views x B=3
    tau = 0.5
    memory = batch_memory(features, tau=tau, center=False)
    views = [F.normalize(v, dim=0) for v in features.reshape(6, 5)]
    expected = []
    for sample in range(3):
        entropies = []
        for anchor in (sample, sample + 3):
            logits = [float(views[anchor] @ views[j]) / tau for j in range(6) if j != anchor]
            total = sum(math.exp(x) for x in logits)
            entropies.append(_entropy([math.exp(x) / total for x in logits]))
        expected.append(sum(entropies) / 2 / math.log(5))
    assert torch.allclose(memory, torch.tensor(expected), atol=1e-5)


def test_batch_memory_centring_subtracts_the_batch_mean() -> None:
    features = torch.randn(2, 4, 6, generator=torch.Generator().manual_seed(1))
    centred = features - features.reshape(8, 6).mean(0)
    assert torch.allclose(
        batch_memory(features, 0.2, center=True),
        batch_memory(centred, 0.2, center=False),
        atol=1e-6,
    )


def test_centring_makes_the_memory_term_spread() -> None:
    """Features sharing a large common component: uncentred ~constant, centred spread."""
    generator = torch.Generator().manual_seed(2)
    batch, dim = 128, 64
    common = torch.full((dim,), 3.0)
    identity = torch.randn(batch, dim, generator=generator)
    scale = torch.linspace(0.1, 1.0, batch)[:, None]  # some samples easy, some hard
    view_a = common + identity + scale * torch.randn(batch, dim, generator=generator)
    view_b = common + identity + scale * torch.randn(batch, dim, generator=generator)
    features = torch.stack([view_a, view_b]).relu()
    uncentred = batch_memory(features, tau=0.1, center=False)
    centred = batch_memory(features, tau=0.1, center=True)
    assert uncentred.std() < 0.01 and uncentred.mean() > 0.9
    assert centred.std() > 5 * uncentred.std()
    # the spread follows the difficulty: hard samples (large view noise) have higher memory
    assert torch.corrcoef(torch.stack([centred, scale.squeeze()]))[0, 1] > 0.5


@pytest.mark.parametrize("normalize_center", [True, False])
def test_normalised_terms_lie_in_unit_interval(normalize_center: bool) -> None:
    features = torch.randn(2, 16, 8, generator=torch.Generator().manual_seed(3))
    memory = batch_memory(features, tau=0.05, center=normalize_center)
    assert memory.min() >= 0 and memory.max() <= 1
    logits = torch.randn(32, 10) * 5
    supervised = supervised_memory(logits)
    assert supervised.min() >= 0 and supervised.max() <= 1


def _filled_bank(
    num_samples: int = 60, dim: int = 8, k: int = 5
) -> tuple[BankMemory, torch.Tensor]:
    generator = torch.Generator().manual_seed(4)
    bank = BankMemory(num_samples, dim, tau=0.2, k=k, center=True)
    features = torch.randn(2, num_samples, dim, generator=generator)
    for batch in torch.arange(num_samples).split(16):
        bank.write(batch, features[:, batch])
    return bank, features


def _brute_force_memory(features: torch.Tensor, tau: float, k: int) -> torch.Tensor:
    """The bank memory term from the written (2, N, D) features, by hand."""
    views = features.half().float()  # the bank stores float16
    count = views.shape[1]
    flat = views.reshape(2 * count, -1)
    flat = F.normalize(flat - flat.mean(0), dim=1).view(2, count, -1)
    positive = (flat[0] * flat[1]).sum(1)
    representative = F.normalize(flat[0] + flat[1], dim=1)
    similarity = representative @ representative.T
    similarity.fill_diagonal_(float("-inf"))
    top = similarity.topk(k, dim=1).values
    logits = torch.cat([positive[:, None], top], dim=1) / tau
    p = torch.softmax(logits, dim=1)
    return -(p * p.log()).sum(1) / math.log(k + 1)


@pytest.mark.skipif(not faiss_available(), reason="faiss not installed")
def test_faiss_neighbours_equal_torch_brute_force() -> None:
    database = F.normalize(torch.randn(300, 16, generator=torch.Generator().manual_seed(5)), dim=1)
    faiss_sims, faiss_ids = search(database, database[:50], k=7, use_faiss=True)
    torch_sims, torch_ids = search(database, database[:50], k=7, use_faiss=False)
    assert torch.equal(faiss_ids, torch_ids)
    assert torch.allclose(faiss_sims, torch_sims, atol=1e-5)


@pytest.mark.parametrize("use_faiss", [True, False])
def test_bank_memory_equals_brute_force(use_faiss: bool) -> None:
    if use_faiss and not faiss_available():
        pytest.skip("faiss not installed")
    bank, features = _filled_bank()
    bank.use_faiss = use_faiss
    memory, stats = bank.compute(labels=torch.arange(60) % 3)
    assert torch.allclose(memory, _brute_force_memory(features, bank.tau, bank.k), atol=1e-4)
    assert memory.min() >= 0 and memory.max() <= 1
    assert 0 <= stats["bank_knn_label_agreement"] <= 1


def test_bank_positive_and_neighbours_share_one_frame() -> None:
    # one frame: the positive is centred by the bank's mean view, like the neighbours, not
    # by the write batch (a write batch of one sample used to get positive = -1 or 0)
    bank, features = _filled_bank()
    same_views = torch.randn(1, 8, generator=torch.Generator().manual_seed(9)).expand(2, 1, 8)
    bank.write(torch.tensor([5]), same_views)
    features = features.clone()
    features[:, 5] = same_views[:, 0]
    positive, _ = bank.frame(torch.arange(60))
    assert positive[5] == pytest.approx(1.0, abs=1e-6)
    views = features.half().float().reshape(120, 8)
    centred = F.normalize(views - views.mean(0), dim=1).view(2, 60, 8)
    assert torch.allclose(positive, (centred[0] * centred[1]).sum(1), atol=1e-5)
    memory, _ = bank.compute()
    assert torch.allclose(memory, _brute_force_memory(features, bank.tau, bank.k), atol=1e-4)


def test_bank_rescores_unwritten_as_unknown_and_round_trips() -> None:
    bank = BankMemory(10, 4, tau=0.2, k=3)
    bank.write(torch.arange(6), torch.randn(2, 6, 4))
    memory, _ = bank.compute()
    assert torch.isnan(memory[6:]).all() and torch.isfinite(memory[:6]).all()
    copy = BankMemory(10, 4, tau=0.2, k=3)
    copy.load_state_dict(bank.state_dict())
    assert torch.equal(copy.compute()[0][:6], memory[:6])
