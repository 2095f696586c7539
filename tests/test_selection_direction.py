"""The SSL selection rules: easy-first ranking, SCAN's two-sided annealed pruning and the
prototypicality score, each against a hand computation."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ssl_emp.config import PruningConfig
from ssl_emp.errors import UserInputError
from ssl_emp.methods.losses import nt_xent_per_sample, nt_xent_per_view
from ssl_emp.neighbours import faiss_available
from ssl_emp.pruning import Pruner
from ssl_emp.pruning.memory_bank import BankMemory
from ssl_emp.pruning.scan import scan_candidates, scan_prune_ratio, scan_tail

N = 40


def _scored(config: PruningConfig, loss: torch.Tensor, memory=None, epochs: int = 10) -> Pruner:
    """A pruner whose table holds ``loss`` (and ``memory``) for every sample after epoch 0."""
    pruner = Pruner(config, num_samples=len(loss), epochs=epochs, seed=0)
    pruner.select(0)
    pruner.step(torch.arange(len(loss)), loss, memory, epoch=0)
    return pruner


def test_easy_topk_keeps_the_lowest_losses() -> None:
    loss = torch.randperm(N, generator=torch.Generator().manual_seed(1)).float()
    pruner = _scored(PruningConfig(policy="topk", rate=0.75, direction="easy"), loss)
    assert pruner.select(1).tolist() == sorted(torch.argsort(loss)[:10].tolist())


def test_easy_eps_greedy_keeps_the_lowest_and_explores_the_rest() -> None:
    loss = torch.arange(N).float()  # sample i has loss i
    config = PruningConfig(policy="eps_greedy", rate=0.5, eps=0.25, direction="easy")
    kept = set(_scored(config, loss).select(1).tolist())
    assert len(kept) == 20
    assert set(range(15)) <= kept  # (1 - eps) K = 15 lowest losses
    assert len(kept - set(range(15))) == 5  # eps K = 5 uniformly from the other 25


@pytest.mark.parametrize("beta", [1.0, -1.0])
def test_easy_emp_keeps_the_lowest_z_loss_plus_beta_z_memory(beta: float) -> None:
    generator = torch.Generator().manual_seed(4)
    loss, memory = torch.rand(N, generator=generator) * 3, torch.rand(N, generator=generator)
    config = PruningConfig(policy="emp", rate=0.7, beta=beta, eps=0.0, direction="easy")
    kept = _scored(config, loss, memory).select(1).tolist()
    z = lambda x: (x.double() - x.double().mean()) / x.double().std(unbiased=False)  # noqa: E731
    expected = torch.argsort(z(loss) + beta * z(memory))[: math.ceil(0.3 * N)]
    assert kept == sorted(expected.tolist())


def test_easy_direction_still_trains_unseen_samples_first() -> None:
    pruner = Pruner(
        PruningConfig(policy="topk", rate=0.5, direction="easy", warmup_epochs=0), 10, 3, seed=0
    )
    pruner.step(torch.arange(6), torch.zeros(6), epoch=0)  # 6..9 never trained
    assert set(range(6, 10)) <= set(pruner.select(1).tolist())


def test_scores_of_an_easy_run_are_reported_unnegated() -> None:
    loss = torch.arange(N).float()
    pruner = _scored(PruningConfig(policy="topk", rate=0.5, direction="easy"), loss)
    pruner.select(1)
    assert pruner.last_stats["score_mean"] == pytest.approx(float(loss.mean()))
    assert np.array_equal(pruner.ranking_scores(), loss.double().numpy())


@pytest.mark.parametrize("policy", ["random", "full", "ucb", "infobatch", "scan"])
def test_easy_direction_is_refused_where_nothing_is_ranked(policy: str) -> None:
    with pytest.raises(UserInputError, match="pruning.direction=easy applies to"):
        Pruner(PruningConfig(policy=policy, direction="easy"), N, 10, seed=0)


def test_nt_xent_per_view_rows_are_each_anchors_cross_entropy() -> None:
    generator = torch.Generator().manual_seed(2)
    z_a, z_b = torch.randn(2, 5, 6, generator=generator)
    views = F.normalize(torch.cat([z_a, z_b]), dim=1)

    def ce(anchor: int, positive: int) -> float:  # by hand, over the other 2B - 1 views
        logits = [float(views[anchor] @ views[j]) / 0.4 for j in range(10) if j != anchor]
        return -float(views[anchor] @ views[positive]) / 0.4 + math.log(
            sum(math.exp(x) for x in logits)
        )

    per_view = nt_xent_per_view(z_a, z_b, temperature=0.4)
    expected = torch.tensor([[ce(i, i + 5) for i in range(5)], [ce(i + 5, i) for i in range(5)]])
    assert torch.allclose(per_view, expected, atol=1e-5)
    assert torch.equal((per_view[0] + per_view[1]) / 2, nt_xent_per_sample(z_a, z_b, 0.4))


def test_scan_annealed_ratio_is_the_release_codes_cosine() -> None:
    # CosineAnnealing(T_cos=3): 0.5 (1 + cos((T - t) / T pi)) for t = 1, 2, 3
    assert [round(scan_prune_ratio(t, 3), 6) for t in (1, 2, 3)] == [0.25, 0.75, 1.0]
    assert scan_prune_ratio(2, 2) == 1.0 and scan_prune_ratio(1, 2) == pytest.approx(0.5)


def test_scan_tail_intersects_the_view_orders_and_tops_up_a_small_intersection() -> None:
    rng = np.random.default_rng(0)
    agree = np.stack([np.arange(10.0), np.arange(10.0)], axis=1)
    assert scan_tail(agree, 3, highest=True, rng=rng).tolist() == [7, 8, 9]
    assert scan_tail(agree, 3, highest=False, rng=rng).tolist() == [0, 1, 2]
    # highest 4 by view 1: {6, 7, 8, 9}; by view 2: {0, 1, 8, 9}; intersection {8, 9} holds
    # 2 < 0.9 x 4, so 2 more come from the symmetric difference {0, 1, 6, 7}
    second = np.array([9.0, 8.0, 0, 0, 0, 0, 0, 0, 7.0, 10.0])
    disagree = np.stack([np.arange(10.0), second], axis=1)
    found = scan_tail(disagree, 4, highest=True, rng=rng)
    assert len(found) == 4 and {8, 9} <= set(found.tolist())
    assert set(found.tolist()) - {8, 9} <= {0, 1, 6, 7}
    # an intersection of at least 90 % is kept as it is (no top-up): 9 of 10 here
    nearly = np.stack([np.arange(40.0), np.arange(40.0)], axis=1)
    nearly[30, 1] = -1.0  # sample 30 leaves view 2's top 10, sample 29 enters
    assert scan_tail(nearly, 10, highest=True, rng=rng).tolist() == list(range(31, 40))


def test_scan_candidates_split_the_rate_between_both_tails() -> None:
    losses = np.stack([np.arange(20.0)] * 2, axis=1)
    rng = np.random.default_rng(0)
    both = scan_candidates(losses, rate=0.5, ill_share=0.5, rng=rng)
    assert both.tolist() == [0, 1, 2, 3, 4, 15, 16, 17, 18, 19]
    ill_only = scan_candidates(losses, rate=0.5, ill_share=1.0, rng=rng)
    assert ill_only.tolist() == list(range(10, 20))


def _scan_run(epochs: int, losses_for, restore_at: int | None = None):
    """Kept sets of a SCAN pruner fed with ``losses_for(epoch, kept)`` (per view order)."""
    config = PruningConfig(policy="scan", rate=0.5, warmup_epochs=1, scan_cycle=3)
    pruner = Pruner(config, num_samples=N, epochs=epochs, seed=5)
    kept_sets, stats = [], []
    for epoch in range(epochs):
        if restore_at is not None and epoch == restore_at:
            restored = Pruner(config, num_samples=N, epochs=epochs, seed=5)
            restored.load_state_dict(pruner.state_dict())
            pruner = restored
        kept = pruner.select(epoch)
        kept_sets.append(kept.tolist())
        stats.append(dict(pruner.last_stats))
        view_losses = losses_for(epoch, kept)
        pruner.step(kept, view_losses.mean(0), epoch=epoch, view_losses=view_losses)
    return kept_sets, stats


def _changing_losses(epoch: int, kept: torch.Tensor) -> torch.Tensor:
    """Per-view losses that reorder every epoch (so a re-ranking would show)."""
    generator = torch.Generator().manual_seed(epoch)
    values = torch.rand(N, generator=generator)[kept]
    return torch.stack([values, values + 0.01])


def test_scan_schedule_by_hand() -> None:
    kept_sets, stats = _scan_run(10, _changing_losses)
    # epoch 0: warm-up; then cycles of 4: a full scoring epoch, then int(20 x 0.25) = 5,
    # int(20 x 0.75) = 15 and 20 of the 20 candidates pruned (rate 0.5 of 40 samples)
    assert [len(kept) for kept in kept_sets] == [40, 40, 35, 25, 20, 40, 35, 25, 20, 40]
    # within a cycle the candidates are fixed from the scoring epoch's losses: the pruned
    # sets grow inside the 20 candidates, and at the end of the cycle all of them are gone
    generator = torch.Generator().manual_seed(1)  # the scoring epoch 1 trained everyone
    scoring = torch.rand(N, generator=generator)
    candidates = set(torch.argsort(scoring)[:10].tolist()) | set(
        torch.argsort(scoring)[-10:].tolist()
    )
    for epoch in (2, 3, 4):
        assert set(range(N)) - set(kept_sets[epoch]) <= candidates
    assert set(range(N)) - set(kept_sets[4]) == candidates
    assert [stats[epoch].get("scan_pruned") for epoch in range(6)] == [None, None, 5, 15, 20, None]
    assert stats[4]["scan_candidates"] == 20


def test_scan_resumes_mid_cycle_with_the_same_candidates() -> None:
    uninterrupted, _ = _scan_run(9, _changing_losses)
    for restore_at in (2, 3, 6):
        resumed, _ = _scan_run(9, _changing_losses, restore_at=restore_at)
        assert resumed == uninterrupted


def test_scan_refuses_another_score() -> None:
    with pytest.raises(UserInputError, match="drop pruning.score=emp"):
        Pruner(PruningConfig(policy="scan", score="emp"), N, 10, seed=0)


@pytest.mark.skipif(not faiss_available(), reason="faiss not installed")
def test_prototype_distance_is_one_minus_the_nearest_centroid_cosine() -> None:
    generator = torch.Generator().manual_seed(3)
    centres = F.normalize(torch.randn(3, 8, generator=generator), dim=1) * 4
    points = centres[torch.arange(90) % 3] + torch.randn(90, 8, generator=generator)
    views = torch.stack([points, points + 0.1 * torch.randn(90, 8, generator=generator)])
    bank = BankMemory(100, 8, tau=0.1, k=4, search_mode="exact")
    bank.ivf.cell_size = 30  # 3 cells for the 90 written rows
    bank.write(torch.arange(90), views)
    columns, stats = bank.compute_columns(prototypes=True)
    _, representatives = bank.frame(torch.arange(90))
    centroids = torch.from_numpy(bank.ivf.centroids)
    assert centroids.shape == (3, 8)
    expected = 1 - (representatives @ centroids.T).max(dim=1).values
    assert torch.allclose(columns["prototype_distance"][:90], expected, atol=1e-5)
    assert torch.isnan(columns["prototype_distance"][90:]).all()  # never written
    assert torch.allclose(columns["memory"], bank.compute()[0], equal_nan=True, atol=0, rtol=0)
    assert stats["prototype_cells"] == 3


def test_prototypical_keeps_the_smallest_distances_and_unscored_first() -> None:
    config = PruningConfig(policy="prototypical", rate=0.5, eps=0.0)
    pruner = _scored(config, torch.rand(N))
    distance = torch.linspace(0.0, 1.0, N).flip(0)  # sample 39 is the most prototypical
    distance[0] = float("nan")  # not in the bank yet: ranks first, like an unseen sample
    pruner.set_columns({"prototype_distance": distance})
    kept = pruner.select(1).tolist()
    assert kept == [0, *range(21, 40)]


def test_prototypicality_needs_the_bank(tiny_config) -> None:
    from ssl_emp.engine.builder import check_method_options

    tiny_config.pruning.policy = "prototypical"
    with pytest.raises(UserInputError, match="add memory.estimator=bank"):
        check_method_options(tiny_config)
    tiny_config.memory.estimator = "bank"
    check_method_options(tiny_config)
