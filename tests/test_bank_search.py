"""Approximate bank search (faiss IVF): exact when every cell is probed, close otherwise,
retrained on the cadence asked for, and resumable exactly."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ssl_emp.errors import UserInputError
from ssl_emp.experiments.train import build_trainer
from ssl_emp.neighbours import IvfSearch, search
from ssl_emp.pruning.memory_bank import MEAN_HORIZON, BankMemory, choose_bank_layout
from tests.conftest import metrics_records, tiny_config_with

pytest.importorskip("faiss")


def clustered(
    rows: int, dim: int = 16, clusters: int = 40, seed: int = 0, spread: float = 0.3
) -> torch.Tensor:
    """Unit vectors around random centres: what learned features look like, unlike noise."""
    generator = np.random.default_rng(seed)
    centres = generator.normal(size=(clusters, dim))
    points = centres[generator.integers(0, clusters, rows)] + spread * generator.normal(
        size=(rows, dim)
    )
    return F.normalize(torch.tensor(points, dtype=torch.float32), dim=1)


def _neighbour_sets(indices: torch.Tensor) -> list[set[int]]:
    return [set(row.tolist()) for row in indices]


ONE_LEVEL, TWO_LEVELS = 10**9, 1  # two_level_from: never / always


@pytest.mark.parametrize("two_level_from", [ONE_LEVEL, TWO_LEVELS])
def test_probing_every_cell_is_exact_search(two_level_from: int) -> None:
    features = clustered(1500)
    exact_similarities, _ = search(features, features, 20)
    ivf = IvfSearch(cell_size=100, probe=10_000, two_level_from=two_level_from, group_probe=10_000)
    similarities, indices = ivf.search(features, features, 20)
    assert torch.allclose(similarities, exact_similarities, atol=1e-5)
    found = features[indices]  # the neighbours' similarities, recomputed by hand
    assert torch.allclose((found * features[:, None]).sum(-1), similarities, atol=1e-5)


@pytest.mark.parametrize("two_level_from", [ONE_LEVEL, TWO_LEVELS])
def test_few_probes_find_most_neighbours_of_clustered_features(two_level_from: int) -> None:
    features = clustered(3000, spread=0.6)
    _, exact = search(features, features, 33)
    ivf = IvfSearch(cell_size=100, probe=2, two_level_from=two_level_from)
    _, approximate = ivf.search(features, features, 33)
    recall = np.mean(
        [
            len(a & b) / 33
            for a, b in zip(_neighbour_sets(exact), _neighbour_sets(approximate), strict=True)
        ]
    )
    assert 0.95 < recall < 0.99  # approximate, and close (0.969 when written)
    assert ivf.cells_for(3000) == 30


def test_queries_with_too_few_candidates_are_searched_exactly() -> None:
    features = clustered(400, clusters=8)
    ivf = IvfSearch(cell_size=10, probe=1)  # ~10 rows per cell, 25 wanted
    similarities, indices = ivf.search(features, features, 25)
    assert ivf.last_exact_fallbacks > 0
    assert (indices >= 0).all() and torch.isfinite(similarities).all()


@pytest.mark.parametrize("two_level_from", [ONE_LEVEL, TWO_LEVELS])
def test_cells_are_retrained_on_the_cadence_and_resume_exactly(two_level_from: int) -> None:
    features = [clustered(800, seed=seed) for seed in range(4)]
    settings = dict(cell_size=50, probe=2, retrain_every=2, two_level_from=two_level_from)
    continuous = IvfSearch(**settings)
    results = [continuous.search(f, f, 10) for f in features]
    assert continuous.trainings == 2  # searches 1 and 3 retrain
    resumed = IvfSearch(**settings)
    for f in features[:1]:
        resumed.search(f, f, 10)
    state = resumed.state_dict()
    fresh = IvfSearch(**settings)
    fresh.load_state_dict(state)
    for f, (similarities, indices) in zip(features[1:], results[1:], strict=True):
        again = fresh.search(f, f, 10)
        assert torch.equal(again[0], similarities) and torch.equal(again[1], indices)


@pytest.mark.parametrize("cells", [2, 37, 120, 400])
def test_two_level_training_gives_exactly_the_cells_asked_for(cells: int) -> None:
    """The per-group cell counts are rounded to sum to ``cells``, every group gets one, and a
    group smaller than its share still fills its cells."""
    sample = clustered(1000, clusters=7, spread=0.2).numpy()
    ivf = IvfSearch(train_points_per_cell=4)
    centroids = ivf._two_level_kmeans(sample, cells, seed=0)
    assert centroids.shape == (cells, 16) and np.isfinite(centroids).all()
    assert len(np.unique(centroids, axis=0)) == cells  # no cell made up by padding


def test_the_two_level_quantizer_is_rebuilt_from_the_centroids_alone() -> None:
    """A checkpoint keeps only the centroids: the groups over them must come out the same."""
    features = clustered(2000)
    ivf = IvfSearch(cell_size=20, probe=3, two_level_from=1, group_probe=2)
    ivf.search(features, features, 5)
    assert ivf.centroids is not None and len(ivf.centroids) == 100
    query = features[:50].numpy()
    restored = IvfSearch(cell_size=20, probe=3, two_level_from=1, group_probe=2)
    restored.load_state_dict(ivf.state_dict())
    assert np.array_equal(ivf.quantizer.search(query, 3)[1], restored.quantizer.search(query, 3)[1])


def _bank(search_mode: str, **ivf: int) -> BankMemory:
    bank = BankMemory(
        1200, 16, tau=0.1, k=16, search_mode=search_mode, exact_below=1000, ivf=IvfSearch(**ivf)
    )
    generator = torch.Generator().manual_seed(0)
    base = clustered(1200)
    views = torch.stack([base, base + 0.05 * torch.randn(base.shape, generator=generator)])
    bank.write(torch.arange(1200), views)
    return bank


def test_the_bank_memory_term_with_every_cell_probed_equals_exact() -> None:
    exact, _ = _bank("exact").compute()
    approximate, stats = _bank("ivf", cell_size=100, probe=10_000).compute()
    assert torch.allclose(approximate, exact, atol=1e-5)
    assert stats["bank_ivf_cells"] == 12


def test_auto_search_switches_at_the_threshold() -> None:
    assert _bank("auto").approximate(1200) and not _bank("auto").approximate(999)
    assert not _bank("exact").approximate(10**9) and _bank("ivf").approximate(2)


def test_a_run_with_approximate_bank_search_resumes_bit_identically(tmp_path: Path) -> None:
    overrides = [
        "data.synthetic_size=96",
        "pruning.policy=emp",
        "pruning.rate=0.5",
        "memory.estimator=bank",
        "memory.search=ivf",
        "memory.ivf_cell_size=16",
        "memory.ivf_probe=2",
        "memory.ivf_retrain_every=2",
        "train.epochs=4",
    ]
    whole = build_trainer(tiny_config_with(tmp_path / "a", *overrides))
    whole.fit()
    first = build_trainer(tiny_config_with(tmp_path / "b", *overrides))
    first.fit(until_epoch=3)  # stops between the retrainings of epochs 3 and 5
    second = build_trainer(tiny_config_with(tmp_path / "b", *overrides, "run.resume=true"))
    second.fit()
    timing = {"wall_time_s", "images_per_s", "bank_pass_s"}
    strip = lambda rs: [{k: v for k, v in r.items() if k not in timing} for r in rs]  # noqa: E731
    records = strip(metrics_records(whole.run.path))
    assert records == strip(metrics_records(second.run.path))
    assert records[-1]["bank_ivf_cells"] == 6


def _two_views(rows: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    base = clustered(rows, seed=seed) + 0.5  # off-centre, so centring matters
    return torch.stack([base, base + 0.1 * torch.randn(base.shape, generator=generator)])


def test_a_compact_bank_written_in_one_batch_equals_the_views_layout() -> None:
    """One write: the batch's mean view is the bank's mean view, so both frames coincide and
    the memory terms agree up to the float16 storage of either layout."""
    views = _two_views(600)
    terms = {}
    for layout in ("views", "compact"):
        bank = BankMemory(600, 16, tau=0.1, k=16, layout=layout)
        bank.write(torch.arange(600), views)
        terms[layout] = bank.compute()[0]
    assert torch.allclose(terms["compact"], terms["views"], atol=2e-3)
    assert not torch.allclose(terms["compact"], terms["views"], atol=1e-7)  # two computations


def test_compact_writes_are_centred_by_a_running_mean_view_weighted_by_their_size() -> None:
    views = _two_views(400)
    bank = BankMemory(400, 16, tau=0.1, k=8, layout="compact")
    writes = [slice(0, 300), slice(300, 304), slice(304, 400)]
    for rows in writes:
        bank.write(torch.arange(400)[rows], views[:, rows])

    def by_hand(batch: torch.Tensor, mean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        first, second = F.normalize(batch[0] - mean, dim=1), F.normalize(batch[1] - mean, dim=1)
        return (first * second).sum(1), F.normalize(first + second, dim=1)

    expected, mean = [], None
    for rows in writes:
        batch = views[:, rows]
        written = batch.reshape(-1, 16).mean(0)
        count = batch.shape[1]
        weight = 1 - np.exp(-count / MEAN_HORIZON)  # the first write sets the mean
        mean = written if mean is None else (1 - weight) * mean + weight * written
        expected.append(by_hand(batch, mean))
    positive, representative = bank.frame(torch.arange(400))
    assert torch.allclose(positive, torch.cat([p for p, _ in expected]), atol=1e-5)
    assert torch.allclose(representative, torch.cat([r for _, r in expected]), atol=2e-3)


def test_the_compact_bank_takes_half_the_memory_and_refuses_the_other_layout() -> None:
    views_bank = BankMemory(1000, 128, tau=0.1, k=8, layout="views")
    compact = BankMemory(1000, 128, tau=0.1, k=8, layout="compact")
    assert views_bank.nbytes() == 1000 * (2 * 128 * 2 + 1)
    assert compact.nbytes() == 1000 * (128 * 2 + 4 + 1)  # 1.28 M rows: 334 MB
    compact.write(torch.arange(1000), _two_views(1000, seed=1).repeat(1, 1, 8))
    restored = BankMemory(1000, 128, tau=0.1, k=8, layout="compact")
    restored.load_state_dict(compact.state_dict())
    small = _two_views(4, seed=2).repeat(1, 1, 8)  # centred by the restored running mean
    for bank in (compact, restored):
        bank.write(torch.arange(4), small)
    assert torch.equal(restored.compute()[0], compact.compute()[0])
    with pytest.raises(UserInputError, match="compact layout.*memory.bank_layout=compact"):
        views_bank.load_state_dict(compact.state_dict())


@pytest.mark.parametrize(
    ("choice", "samples", "expected"),
    [
        ("auto", 96, "views"),
        ("auto", 97, "compact"),
        ("views", 10**6, "views"),
        ("compact", 5, "compact"),
    ],
)
def test_the_auto_layout_switches_at_exact_below(
    tmp_path: Path, choice: str, samples: int, expected: str
) -> None:
    config = tiny_config_with(
        tmp_path,
        "memory.estimator=bank",
        "pruning.policy=emp",
        f"memory.bank_layout={choice}",
        "memory.exact_below=97",
    )
    assert choose_bank_layout(config.memory.bank_layout, samples, config.memory.exact_below) == (
        expected
    )


def test_a_run_with_the_compact_bank_resumes_bit_identically(tmp_path: Path) -> None:
    overrides = [
        "data.synthetic_size=96",
        "pruning.policy=emp",
        "pruning.rate=0.5",
        "memory.estimator=bank",
        "memory.bank_layout=compact",
        "memory.refresh_every=2",
        "train.epochs=4",
    ]
    whole = build_trainer(tiny_config_with(tmp_path / "a", *overrides))
    whole.fit()
    assert whole.estimator.bank.layout == "compact"  # type: ignore[attr-defined]
    first = build_trainer(tiny_config_with(tmp_path / "b", *overrides))
    first.fit(until_epoch=3)
    second = build_trainer(tiny_config_with(tmp_path / "b", *overrides, "run.resume=true"))
    second.fit()
    timing = {"wall_time_s", "images_per_s", "bank_pass_s"}
    strip = lambda rs: [{k: v for k, v in r.items() if k not in timing} for r in rs]  # noqa: E731
    assert strip(metrics_records(whole.run.path)) == strip(metrics_records(second.run.path))
