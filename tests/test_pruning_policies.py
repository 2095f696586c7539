"""Selection rules and the pruner's bookkeeping, against hand-made score tables."""

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from ssl_emp.config import PruningConfig
from ssl_emp.errors import UserInputError
from ssl_emp.pruning import Pruner
from ssl_emp.pruning.score_table import combine_scores, standardize
from ssl_emp.pruning.selection import select_infobatch, ucb_values

N, EPOCHS = 200, 10


def _feed(pruner: Pruner, epoch: int, seed: int = 0, with_memory: bool = True) -> None:
    """Train every selected sample once with deterministic pseudo-random losses/memory."""
    generator = torch.Generator().manual_seed(seed * 100 + epoch)
    kept = pruner.select(epoch)
    loss = torch.rand(len(kept), generator=generator) * 3
    memory = torch.rand(len(kept), generator=generator) if with_memory else None
    pruner.step(kept, loss.requires_grad_(), memory, epoch=epoch)


def _sequence(config: PruningConfig, epochs: int = EPOCHS) -> list[list[int]]:
    pruner = Pruner(config, num_samples=N, epochs=epochs, seed=3)
    chosen = []
    for epoch in range(epochs):
        _feed(pruner, epoch)
        chosen.append(pruner.select(epoch).tolist())
    return chosen


@pytest.mark.parametrize("combine", ["zscore", "raw"])
def test_emp_with_beta_zero_is_eps_greedy(combine: str) -> None:
    emp = _sequence(PruningConfig(policy="emp", rate=0.7, beta=0.0, combine=combine))
    greedy = _sequence(PruningConfig(policy="eps_greedy", rate=0.7, combine=combine))
    assert emp == greedy


@pytest.mark.parametrize("beta", [2.0, -1.0])
def test_emp_keeps_the_top_k_of_z_loss_plus_beta_z_memory(beta: float) -> None:
    pruner = Pruner(PruningConfig(policy="emp", rate=0.7, beta=beta, eps=0.0), N, EPOCHS, seed=0)
    generator = torch.Generator().manual_seed(11)
    loss, memory = torch.rand(N, generator=generator) * 3, torch.rand(N, generator=generator)
    pruner.select(0)  # warm-up: all samples
    pruner.step(torch.arange(N), loss, memory, epoch=0)
    kept = pruner.select(1).tolist()
    z_loss = (loss.double() - loss.double().mean()) / loss.double().std(unbiased=False)
    z_memory = (memory.double() - memory.double().mean()) / memory.double().std(unbiased=False)
    expected = torch.argsort(-(z_loss + beta * z_memory))[: math.ceil(0.3 * N)]
    assert kept == sorted(expected.tolist())
    loss_only = torch.argsort(-loss)[: math.ceil(0.3 * N)]
    assert kept != sorted(loss_only.tolist())  # the memory term changed the selection


@pytest.mark.parametrize("policy", ["random", "topk", "eps_greedy", "ucb", "emp"])
@pytest.mark.parametrize("rate", [0.3, 0.5, 0.7, 0.95])
def test_hard_rate_policies_keep_exactly_k(policy: str, rate: float) -> None:
    pruner = Pruner(PruningConfig(policy=policy, rate=rate, warmup_epochs=2), N, EPOCHS, seed=0)
    expected = math.ceil((1 - Fraction(str(rate))) * N)  # exact: K = ceil((1 - s) N)
    for epoch in range(EPOCHS):
        kept = pruner.select(epoch)
        assert len(kept) == (N if epoch < 2 else expected)
        assert len(set(kept.tolist())) == len(kept)
        _feed(pruner, epoch)


def test_full_keeps_everything_and_anneal_returns_to_full() -> None:
    full = Pruner(PruningConfig(policy="full"), N, EPOCHS, seed=0)
    assert full.select(5).tolist() == list(range(N))
    annealed = Pruner(PruningConfig(policy="topk", rate=0.5, anneal=0.2), N, EPOCHS, seed=0)
    sizes = []
    for epoch in range(EPOCHS):
        sizes.append(len(annealed.select(epoch)))
        _feed(annealed, epoch)
    assert sizes == [N] + [100] * 7 + [N, N]


def test_topk_takes_the_highest_losses() -> None:
    pruner = Pruner(PruningConfig(policy="topk", rate=0.9, warmup_epochs=0), 50, 3, seed=0)
    losses = torch.linspace(0, 1, 50)[
        torch.randperm(50, generator=torch.Generator().manual_seed(1))
    ]
    pruner.step(torch.arange(50), losses, epoch=0)
    expected = torch.argsort(losses, descending=True)[:5].sort().values
    assert pruner.select(1).tolist() == expected.tolist()


def test_unseen_samples_rank_first() -> None:
    pruner = Pruner(PruningConfig(policy="topk", rate=0.5, warmup_epochs=0), 10, 3, seed=0)
    pruner.step(torch.arange(6), torch.full((6,), 9.0), epoch=0)
    assert set(range(6, 10)) <= set(pruner.select(1).tolist())


def test_eps_greedy_mixes_greedy_and_random() -> None:
    pruner = Pruner(
        PruningConfig(policy="eps_greedy", rate=0.8, eps=0.25, warmup_epochs=0), 100, 3, seed=0
    )
    pruner.step(torch.arange(100), torch.arange(100).float(), epoch=0)
    kept = set(pruner.select(1).tolist())
    assert len(kept) == 20
    assert set(range(85, 100)) <= kept  # (1 - eps) K = 15 highest
    assert len(kept & set(range(85))) == 5  # eps K = 5 from the rest


def test_ucb_ranks_by_mean_plus_c_std_on_a_hand_made_history() -> None:
    pruner = Pruner(
        PruningConfig(policy="ucb", rate=0.5, ucb_c=2.0, ema=0.5, warmup_epochs=0), 4, 5, seed=0
    )
    histories = {0: [1.0, 1.0], 1: [0.0, 2.0], 2: [1.5, 1.5], 3: [0.2, 0.4]}
    for step in range(2):
        indices = torch.arange(4)
        pruner.step(indices, torch.tensor([histories[i][step] for i in range(4)]), epoch=step)
    # EMA with a = 0.5: mean = 0.5 x0 + 0.5 x1, var = 0.5 * (0 + 0.5 (x1 - x0)^2)
    means = {i: 0.5 * h[0] + 0.5 * h[1] for i, h in histories.items()}
    stds = {i: math.sqrt(0.25 * (h[1] - h[0]) ** 2) for i, h in histories.items()}
    values = {i: means[i] + 2.0 * stds[i] for i in histories}
    assert values == {0: 1.0, 1: 3.0, 2: 1.5, 3: 0.5}
    assert pruner.select(2).tolist() == [1, 2]


def test_ucb_sample_seen_once_gets_the_median_bonus() -> None:
    values = ucb_values(
        mean=np.array([1.0, 1.0, 1.0, 0.9]),
        var=np.array([0.04, 0.16, 0.36, 0.0]),
        observations=np.array([3, 3, 3, 1]),
        c=1.0,
    )
    assert values[3] == pytest.approx(0.9 + 0.4)  # median std of the others: 0.4
    unseen = ucb_values(np.zeros(2), np.zeros(2), np.array([0, 2]), c=1.0)
    assert unseen[0] == np.inf


def test_ucb_selects_a_sample_seen_once_over_a_lower_bound_history() -> None:
    """Seen once at mean 1.0 vs seen often at mean 0.9, std 0.3: the prior puts it first."""
    pruner = Pruner(
        PruningConfig(policy="ucb", rate=0.5, ucb_c=1.0, ema=0.5, warmup_epochs=0), 4, 5, seed=0
    )
    pruner.step(torch.tensor([0, 1, 2]), torch.tensor([0.6, 0.6, 0.0]), epoch=0)
    pruner.step(torch.tensor([0, 1, 2]), torch.tensor([1.2, 1.2, 0.0]), epoch=1)
    pruner.step(torch.tensor([3]), torch.tensor([1.0]), epoch=1)
    # samples 0, 1: mean 0.9, std 0.3 -> 1.2; sample 3 seen once: 1.0 + median std 0.3 = 1.3
    assert pruner.select(2).tolist() == [0, 3] or pruner.select(2).tolist() == [1, 3]


def test_infobatch_rules_over_many_draws() -> None:
    scores = np.concatenate([np.linspace(0, 1, 50), np.linspace(2, 3, 50)])  # mean 1.5
    rate = 0.4
    kept_below = np.zeros(50)
    rng = np.random.default_rng(0)
    draws = 2000
    for _ in range(draws):
        selection = select_infobatch(scores, rate, rng)
        kept = selection.indices
        assert set(range(50, 100)) <= set(kept.tolist())  # above mean: always kept
        below = kept < 50
        assert np.allclose(selection.weights[below], 1 / (1 - rate))
        assert np.allclose(selection.weights[~below], 1.0)
        kept_below[kept[below]] += 1
    pruned_frequency = 1 - kept_below / draws
    assert abs(pruned_frequency.mean() - rate) < 0.01
    assert np.all(np.abs(pruned_frequency - rate) < 0.06)


def test_infobatch_full_data_after_delta_and_weighted_loss() -> None:
    config = PruningConfig(policy="infobatch", rate=0.5, delta=0.8, warmup_epochs=1)
    pruner = Pruner(config, N, EPOCHS, seed=0)
    scores = torch.linspace(0, 1, N)  # the same loss for a sample every epoch
    sizes = []
    for epoch in range(EPOCHS):
        kept = pruner.select(epoch)
        sizes.append(len(kept))
        losses = scores[kept].clone().requires_grad_()
        scalar = pruner.step(kept, losses, epoch=epoch)
        # by hand: on pruning epochs the kept below-mean samples weigh 1 / (1 - r) = 2
        pruning = 1 <= epoch < 8
        weights = torch.where((scores[kept] < scores.mean()) & pruning, 2.0, 1.0)
        assert torch.allclose(scalar, (weights * scores[kept]).mean())
        scalar.backward()  # the gradient that trains carries the weights too
        assert torch.allclose(losses.grad, weights / len(kept))
    assert sizes[0] == N and sizes[8:] == [N, N]
    assert all(n < N for n in sizes[1:8])


@pytest.mark.parametrize(
    ("epochs", "delta", "pruned_epochs"),
    [(10, 0.875, 8), (10, 0.8, 8), (8, 0.875, 7), (3, 0.5, 1), (100, 0.875, 87)],
)
def test_infobatch_prunes_the_first_floor_delta_e_epochs(epochs, delta, pruned_epochs) -> None:
    # the original samples by 1-based iteration and prunes while iteration <= delta * E
    config = PruningConfig(policy="infobatch", rate=0.5, delta=delta, warmup_epochs=0)
    pruner = Pruner(config, N, epochs, seed=0)
    full = [pruner.is_full_epoch(epoch) for epoch in range(epochs)]
    assert full == [False] * pruned_epochs + [True] * (epochs - pruned_epochs)
    assert pruned_epochs == math.floor(delta * epochs)


def test_infobatch_rate_above_its_floor_is_refused() -> None:
    with pytest.raises(UserInputError, match="too high for infobatch"):
        Pruner(PruningConfig(policy="infobatch", rate=0.95), N, EPOCHS, seed=0)


def test_state_dict_round_trip_gives_identical_later_selections() -> None:
    config = PruningConfig(policy="emp", rate=0.6, beta=1.5)
    original = Pruner(config, N, EPOCHS, seed=7)
    for epoch in range(4):
        _feed(original, epoch)
    restored = Pruner(config, N, EPOCHS, seed=7)
    restored.load_state_dict(original.state_dict())
    for epoch in range(4, EPOCHS):
        assert original.select(epoch).tolist() == restored.select(epoch).tolist()
        _feed(original, epoch)
        _feed(restored, epoch)


def test_zscore_combination_and_raw() -> None:
    loss = np.array([1.0, 2.0, 3.0, np.inf])
    memory = np.array([0.5, 0.1, np.nan, 0.2])
    z = combine_scores(loss, memory, beta=2.0, combine="zscore")
    finite_loss = (loss[:3] - 2.0) / np.std([1.0, 2.0, 3.0])
    filled = np.array([0.5, 0.1, 0.8 / 3, 0.2])
    z_memory = (filled - filled.mean()) / filled.std()
    assert np.allclose(z[:3], finite_loss + 2.0 * z_memory[:3])
    assert z[3] == np.inf
    raw = combine_scores(loss, memory, beta=2.0, combine="raw")
    assert np.allclose(raw[:3], loss[:3] + 2.0 * filled[:3])
    assert np.array_equal(combine_scores(loss, memory, 0.0, "zscore"), loss)


def test_standardize_ignores_infinite_entries() -> None:
    values = standardize(np.array([1.0, 3.0, np.inf, np.nan]))
    assert values.tolist()[:2] == [-1.0, 1.0] and values[2] == np.inf and values[3] == 0.0


def test_weights_are_one_for_hard_rate_policies() -> None:
    pruner = Pruner(PruningConfig(policy="topk", rate=0.5), N, EPOCHS, seed=0)
    _feed(pruner, 0)
    kept = pruner.select(1)
    losses = torch.rand(len(kept))
    assert torch.allclose(pruner.step(kept, losses, epoch=1), losses.mean())


def test_diagnostics_count_revisits() -> None:
    pruner = Pruner(PruningConfig(policy="topk", rate=0.5, warmup_epochs=1), 4, 3, seed=0)
    pruner.select(0)
    pruner.step(torch.arange(4), torch.tensor([4.0, 3.0, 2.0, 1.0]), epoch=0)
    kept = pruner.select(1)
    assert kept.tolist() == [0, 1]
    pruner.step(kept, torch.tensor([1.0, 1.0]), memory=torch.tensor([0.2, 0.4]), epoch=1)
    stats = pruner.epoch_diagnostics(1, kept=kept)
    assert stats["frac_trained_at_most_once"] == 0.5
    assert stats["frac_never_revisited"] == 0.5
    assert stats["memory_kept_mean"] == pytest.approx(0.3)
    assert pruner.last_stats["overlap_with_loss_ranking"] == 1.0
