"""Pruning wired into SimCLR pretraining: every policy end to end on tiny synthetic data."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ssl_emp.config import PruningConfig
from ssl_emp.data.batch import GlobalBatch
from ssl_emp.engine.checkpoint import list_checkpoints
from ssl_emp.errors import UserInputError
from ssl_emp.experiments.train import build_trainer, pretrain
from ssl_emp.pruning import Pruner, batch_memory
from ssl_emp.pruning.selection import ucb_values
from tests.conftest import metrics_records, tiny_config_with


@pytest.mark.parametrize(
    "policy", ["full", "random", "topk", "eps_greedy", "ucb", "infobatch", "emp"]
)
def test_every_policy_trains_and_accounts(tmp_path: Path, policy: str) -> None:
    run = pretrain(
        tiny_config_with(
            tmp_path,
            f"pruning.policy={policy}",
            "pruning.rate=0.5",
            "pruning.delta=0.75",
            "train.epochs=4",
            "train.batch_size=8",
        )
    )
    records = metrics_records(run.path)
    kept = [r["kept"] for r in records]
    if policy == "full":
        assert kept == [48] * 4
    elif policy == "infobatch":
        assert kept[0] == 48 and kept[-1] == 48 and kept[1] < 48
    else:
        assert kept == [48, 24, 24, 24]
    visits = sum(kept)
    assert records[-1]["visits"] == visits
    assert records[-1]["effective_rate"] == pytest.approx(1 - visits / (48 * 4))
    scores = np.load(run.path / "scores.npz")
    assert scores["train_count"].sum() == visits
    assert scores["train_count"].shape == scores["memory"].shape == scores["score"].shape == (48,)
    assert np.isfinite(scores["memory"]).all()
    assert 0 <= records[-1]["memory_mean"] <= 1
    assert records[-1]["train_count_gini"] == pytest.approx(_gini(scores["train_count"]))


def _gini(counts: np.ndarray) -> float:
    counts = np.asarray(counts, dtype=float)
    return float(
        np.abs(counts[:, None] - counts[None]).sum() / (2 * len(counts) ** 2 * counts.mean())
    )


def test_emp_metrics_report_lfl_diagnostics(tmp_path: Path) -> None:
    run = pretrain(
        tiny_config_with(
            tmp_path,
            "pruning.policy=emp",
            "pruning.rate=0.7",
            "train.epochs=3",
            "train.batch_size=8",
        )
    )
    last = metrics_records(run.path)[-1]
    for key in [
        "frac_trained_at_most_once",
        "frac_never_revisited",
        "memory_std",
        "memory_q10",
        "memory_q90",
        "memory_kept_mean",
        "score_q50",
        "overlap_with_loss_ranking",
        "score_age_mean",
    ]:
        assert last[key] is not None, key
    assert last["kept"] == math.ceil(0.3 * 48)


BANK_EMP = [
    "pruning.policy=emp",
    "pruning.rate=0.5",
    "memory.estimator=bank",
    "memory.k=5",
    "train.epochs=3",
    "train.batch_size=8",
]


def test_bank_estimator_rescores_every_sample(tmp_path: Path) -> None:
    run = pretrain(tiny_config_with(tmp_path, *BANK_EMP, "memory.refresh_every=2"))
    last = metrics_records(run.path)[-1]
    assert "bank_neighbour_sim_mean" in last and "bank_knn_label_agreement" in last
    scores = np.load(run.path / "scores.npz")
    assert np.isfinite(scores["memory"]).all()


def test_bank_rescores_samples_that_were_pruned(tmp_path: Path) -> None:
    trainer = build_trainer(tiny_config_with(tmp_path, *BANK_EMP))
    trainer.fit(until_epoch=2)
    before = trainer.pruner.table.memory.clone()
    trainer.fit(until_epoch=3)
    pruned = trainer.pruner.table.last_seen < 2  # not trained in the third epoch
    assert int(pruned.sum()) == 24
    changed = trainer.pruner.table.memory[pruned] != before[pruned]
    assert bool(changed.all())  # new neighbours around them, so a new term


def test_resume_with_pruning_is_exact(tmp_path: Path) -> None:
    overrides = [
        "pruning.policy=emp",
        "pruning.rate=0.5",
        "memory.estimator=bank",
        "memory.k=4",
        "train.epochs=4",
        "train.batch_size=8",
    ]
    straight = pretrain(tiny_config_with(tmp_path / "a", *overrides))
    first = build_trainer(tiny_config_with(tmp_path / "b", *overrides))
    first.fit(until_epoch=2)
    resumed = build_trainer(tiny_config_with(tmp_path / "b", *overrides, "run.resume=true"))
    resumed.fit()
    for key in ("score", "memory", "train_count"):
        a = np.load(straight.path / "scores.npz")[key]
        b = np.load(resumed.run.path / "scores.npz")[key]
        assert np.array_equal(a, b), key
    assert [r["loss"] for r in metrics_records(straight.path)] == [
        r["loss"] for r in metrics_records(resumed.run.path)
    ]


def test_batch_larger_than_pruned_set_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="exceeds the 5 samples kept per epoch"):
        build_trainer(
            tiny_config_with(
                tmp_path, "pruning.policy=topk", "pruning.rate=0.9", "train.batch_size=16"
            )
        )


def test_projection_layer_memory(tmp_path: Path) -> None:
    trainer = build_trainer(tiny_config_with(tmp_path, "memory.layer=projection"))
    images = trainer.data.images[:8]
    output = trainer.model(images)
    memory = trainer.estimator.batch_memory(GlobalBatch.single(torch.arange(8)), output)
    assert memory.shape == (8,)
    assert output.projections.shape[-1] == 16
    expected = batch_memory(output.projections, tau=0.1)  # the projection head's, not h's
    assert torch.equal(memory, expected)
    assert not torch.allclose(memory, batch_memory(output.features, tau=0.1))


def test_flat_memory_term_is_flagged(tmp_path: Path, capsys) -> None:
    pretrain(
        tiny_config_with(
            tmp_path,
            "pruning.policy=emp",
            "pruning.rate=0.5",
            "memory.center=false",
            "memory.tau=100",
            "train.epochs=2",
            "train.batch_size=8",
        )
    )
    assert "carries little ranking signal" in capsys.readouterr().out


def test_ucb_scores_file_holds_the_values_that_selected(tmp_path: Path) -> None:
    run = pretrain(tiny_config_with(tmp_path, "pruning.policy=ucb", "pruning.rate=0.5"))
    saved = np.load(run.scores_path)
    state = torch.load(list_checkpoints(run.checkpoint_dir)[-1], weights_only=False)
    table = {name: value.double().numpy() for name, value in state["pruner"]["table"].items()}
    expected = ucb_values(table["loss_mean"], table["loss_var"], table["observations"], c=1.0)
    assert np.array_equal(saved["score"], expected)
    assert not np.array_equal(saved["score"], saved["loss"])  # not the last loss


def test_warmup_covering_every_epoch_is_reported(tmp_path: Path, capsys) -> None:
    pretrain(
        tiny_config_with(tmp_path, "pruning.policy=emp", "pruning.warmup_epochs=2")
    )  # train.epochs=2
    assert "never prunes here" in capsys.readouterr().out
    pretrain(tiny_config_with(tmp_path / "b", "pruning.policy=emp", "pruning.warmup_epochs=1"))
    assert "never prunes" not in capsys.readouterr().out


def test_fit_until_epoch_zero_trains_nothing(tmp_path: Path) -> None:
    trainer = build_trainer(tiny_config_with(tmp_path))
    assert trainer.fit(until_epoch=0) == []
    assert trainer.state.epoch == 0 and trainer.state.step == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_plugin_pruner_takes_cuda_losses_with_its_default_cpu_table() -> None:
    pruner = Pruner(PruningConfig(policy="emp", rate=0.5), num_samples=8, epochs=2, seed=0)
    losses = torch.rand(4, device="cuda", requires_grad=True)
    scalar = pruner.step(torch.arange(4), losses, memory=torch.rand(4, device="cuda"), epoch=0)
    assert scalar.device.type == "cuda"
    assert torch.equal(pruner.table.loss[:4], losses.detach().cpu())


@pytest.mark.parametrize("method", ["simclr", "moco"])
def test_bank_refresh_leaves_training_untouched(tmp_path: Path, method: str) -> None:
    # with a selection that ignores the memory term, a refresh must not change one number
    overrides = [
        "train.epochs=3",
        "pruning.policy=random",
        "pruning.rate=0.5",
        "memory.estimator=bank",
        "memory.k=4",
    ]
    if method == "moco":
        overrides += ["method.name=moco", "augment.preset=mocov2", "method.queue_size=32"]
    plain = pretrain(tiny_config_with(tmp_path / "plain", *overrides))
    refreshed = pretrain(
        tiny_config_with(tmp_path / "refresh", *overrides, "memory.refresh_every=1")
    )
    losses = [r["loss"] for r in metrics_records(plain.path)]
    assert [r["loss"] for r in metrics_records(refreshed.path)] == losses
    weights = torch.load(list_checkpoints(plain.checkpoint_dir)[-1], weights_only=False)["model"]
    after = torch.load(list_checkpoints(refreshed.checkpoint_dir)[-1], weights_only=False)["model"]
    assert all(torch.equal(weights[name], after[name]) for name in weights)  # queue, BN too
    memory_plain = np.load(plain.scores_path)["memory"]
    assert not np.allclose(memory_plain, np.load(refreshed.scores_path)["memory"])  # it ran


def test_the_step_backpropagates_the_pruners_weighted_loss(tmp_path: Path) -> None:
    # weights of zero make the weighted loss 0: no gradient, so SGD leaves every weight alone
    config = tiny_config_with(tmp_path, "pruning.policy=infobatch", "train.weight_decay=0")
    trainer = build_trainer(config)
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.pruner.weights.zero_()
    assert trainer.train_step(GlobalBatch.single(torch.arange(16)), progress=0.5) is not None
    after = dict(trainer.model.named_parameters())
    assert all(torch.equal(before[name], after[name]) for name in before)
    trainer.pruner.weights.fill_(1.0)
    trainer.train_step(GlobalBatch.single(torch.arange(16)), progress=0.5)
    assert any(not torch.equal(before[name], after[name]) for name in before)


def test_scan_trains_its_schedule_and_records_each_view_orders_loss(tmp_path: Path) -> None:
    # 48 samples, rate 0.5: 12 candidates per tail, each the intersection of the two view
    # orders' choices (topped up to 12 when it holds fewer than 90 %, so 11 or 12): 22-24 in
    # all; epoch 1 warm-up, 2 scoring, then int() of 25/75/100 % of them
    run = pretrain(
        tiny_config_with(
            tmp_path, "pruning.policy=scan", "pruning.rate=0.5", "train.epochs=6",
            "train.batch_size=8",
        )
    )  # fmt: skip
    records = metrics_records(run.path)
    candidates = records[2]["scan_candidates"]
    assert 22 <= candidates <= 24
    assert [r.get("scan_candidates") for r in records[3:5]] == [candidates] * 2  # one cycle
    pruned = [int(candidates * 0.25), int(candidates * 0.75), candidates]
    assert [r.get("scan_pruned") for r in records] == [None, None, *pruned, None]
    assert [r["kept"] for r in records] == [48, 48, *(48 - p for p in pruned), 48]
    visits = sum(r["kept"] for r in records)
    assert records[-1]["effective_rate"] == pytest.approx(1 - visits / (48 * 6))
    state = torch.load(list_checkpoints(run.checkpoint_dir)[-1], weights_only=False)
    view_loss, loss = state["pruner"]["table"]["view_loss"], state["pruner"]["table"]["loss"]
    assert torch.allclose(view_loss.mean(dim=1), loss, atol=1e-6)  # SimCLR: the two anchors
    assert not torch.equal(view_loss[:, 0], view_loss[:, 1])


def test_scan_resumes_mid_cycle_exactly(tmp_path: Path) -> None:
    overrides = ["pruning.policy=scan", "pruning.rate=0.5", "train.epochs=6", "train.batch_size=8"]
    straight = pretrain(tiny_config_with(tmp_path / "a", *overrides))
    first = build_trainer(tiny_config_with(tmp_path / "b", *overrides))
    first.fit(until_epoch=3)  # stops inside the cycle: its candidates are in the checkpoint
    resumed = build_trainer(tiny_config_with(tmp_path / "b", *overrides, "run.resume=true"))
    resumed.fit()
    assert (
        metrics_records(resumed.run.path)[-1]["loss"] == metrics_records(straight.path)[-1]["loss"]
    )
    kept = [r["kept"] for r in metrics_records(resumed.run.path)]
    assert kept == [r["kept"] for r in metrics_records(straight.path)]
    assert kept[2] < 48 and kept[-1] == 48  # pruned inside the cycle, full at the next scoring


def test_prototypical_ranks_the_banks_centroid_distances(tmp_path: Path) -> None:
    run = pretrain(
        tiny_config_with(
            tmp_path, "pruning.policy=prototypical", "memory.estimator=bank", "memory.k=4",
            "memory.ivf_cell_size=16", "pruning.rate=0.5", "pruning.eps=0", "train.epochs=3",
            "train.batch_size=8",
        )
    )  # fmt: skip
    records = metrics_records(run.path)
    assert [r["kept"] for r in records] == [48, 24, 24]
    assert records[-1]["prototype_cells"] == 3  # ceil(48 / 16)
    saved = np.load(run.scores_path)
    assert np.isfinite(saved["score"]).all() and (saved["score"] >= 0).all()
    assert np.array_equal(saved["score"], saved["prototype_distance"])
