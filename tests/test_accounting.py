"""Gini coefficient and effective pruning rate against hand computations."""

import pytest
import torch

from ssl_emp.pruning.accounting import effective_rate, gini


def test_gini_of_equal_counts_is_zero() -> None:
    assert gini(torch.full((10,), 3)) == 0.0


def test_gini_of_one_sample_taking_everything() -> None:
    # sorted [0, 0, 0, 4]: sum (2i - n - 1) c_i = (2*4 - 5) * 4 = 12; / (4 * 4) = 0.75
    assert gini(torch.tensor([4, 0, 0, 0])) == pytest.approx(0.75)


def test_gini_matches_mean_absolute_difference_definition() -> None:
    counts = torch.tensor([1, 2, 2, 5, 9, 0, 3], dtype=torch.float64)
    pairwise = (counts[:, None] - counts[None, :]).abs().sum()
    expected = pairwise / (2 * len(counts) ** 2 * counts.mean())
    assert gini(counts) == pytest.approx(float(expected))


def test_effective_rate() -> None:
    assert effective_rate(visits=300, num_samples=100, epochs=10) == pytest.approx(0.7)
    assert effective_rate(visits=1000, num_samples=100, epochs=10) == 0.0
