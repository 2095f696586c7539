"""Contaminated SSL data: junk images of three kinds, and how often the pruner visits them."""

from pathlib import Path

import numpy as np
import pytest
import torch

from ssl_emp.config import load_config
from ssl_emp.data import build_datasets
from ssl_emp.data.contamination import add_junk
from ssl_emp.errors import UserInputError
from ssl_emp.experiments.train import pretrain
from tests.conftest import metrics_records, tiny_config_with


def _data():
    config = load_config(None, ["data.source=synthetic", "data.synthetic_size=90"])
    return build_datasets(config.data, seed=0)[0]


def test_junk_replaces_a_seeded_fraction_with_three_kinds() -> None:
    data = _data()
    dirty, junk = add_junk(data, fraction=0.2, seed=3)
    assert len(junk) == 18 and np.array_equal(junk, np.sort(junk))
    changed = (dirty.images != data.images).flatten(1).any(dim=1).numpy()
    assert set(np.flatnonzero(changed)) <= set(junk.tolist())  # nothing else touched
    assert torch.equal(dirty.labels, data.labels)
    again, same = add_junk(data, fraction=0.2, seed=3)
    assert np.array_equal(junk, same) and torch.equal(again.images, dirty.images)
    images = dirty.images[torch.from_numpy(junk)].float()
    # near-duplicates: within +-8 of one common image; noise: rough; blobs: smooth
    spread = (images - images[:, None]).abs().flatten(2).amax(dim=2)
    duplicates = [i for i in range(18) if int((spread[i] <= 16).sum()) >= 6]
    assert len(duplicates) == 6
    roughness = (images[..., 1:] - images[..., :-1]).abs().mean(dim=(1, 2, 3))
    others = sorted(set(range(18)) - set(duplicates), key=lambda i: float(roughness[i]))
    smooth, rough = others[:6], others[6:]
    assert (
        float(roughness[smooth].max()) < 30 and float(roughness[rough].min()) > 60
    )  # blobs, noise


def test_junk_visits_are_reported_per_epoch(tmp_path: Path) -> None:
    run = pretrain(
        tiny_config_with(
            tmp_path,
            "data.junk_fraction=0.25",
            "pruning.policy=emp",
            "pruning.rate=0.5",
            "train.batch_size=8",
            "train.epochs=3",
        )
    )
    junk = np.load(run.junk_path)["junk"]
    assert len(junk) == 12
    counts = np.load(run.scores_path)["train_count"]
    last = metrics_records(run.path)[-1]
    assert last["junk_visit_share"] == pytest.approx(counts[junk].sum() / counts.sum())
    assert last["visits_per_junk"] == pytest.approx(counts[junk].mean())
    clean = np.setdiff1d(np.arange(48), junk)
    assert last["visits_per_clean_image"] == pytest.approx(counts[clean].mean())


def test_junk_fraction_out_of_range_is_refused() -> None:
    with pytest.raises(UserInputError, match="'data.junk_fraction' must be >= 0.0 and < 1.0"):
        load_config(None, ["data.junk_fraction=1.0"])
