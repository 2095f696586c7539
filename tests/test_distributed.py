"""Two CPU processes (gloo) started by the tests: identical score tables, disjoint shards,
global budget accounting, and a failing rank that ends the job instead of hanging."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from ssl_emp.collectives import cleanup
from ssl_emp.config import load_config
from ssl_emp.data.batch import GlobalBatch, shard_sizes
from ssl_emp.engine.callbacks import Callback
from ssl_emp.engine.checkpoint import list_checkpoints
from ssl_emp.engine.state import StepOutcome
from ssl_emp.engine.trainer import Trainer
from ssl_emp.experiments.train import build_trainer
from tests.conftest import TINY_OVERRIDES, metrics_records, pretrain_command

DDP_OVERRIDES = [
    "pruning.policy=emp",
    "pruning.rate=0.5",
    "train.batch_size=8",
    "train.dist_timeout_s=20",
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _worker(
    rank: int,
    world: int,
    port: int,
    run_dir: str,
    overrides: list[str],
    out: str,
    fail_rank: int,
    diverge_rank: int,
    stop_rank: int = -1,
) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    config = load_config(None, [*TINY_OVERRIDES, *overrides, f"run.dir={run_dir}"])
    trainer = build_trainer(config)
    if rank == fail_rank:
        raise RuntimeError(f"simulated failure on rank {rank}")
    if rank == diverge_rank:  # a score table that no longer matches the other rank's
        trainer.pruner.table.loss[:10] = 5.0
    if rank == stop_rank:  # a stop signal that reaches this rank alone, after step 4
        trainer.callbacks.append(_StopAfter(step=4))
    local = _LocalCounts(len(trainer.data))
    trainer.callbacks.append(local)
    trainer.fit()
    buffers = {
        name: value for name, value in trainer.model.state_dict().items() if "support" in name
    }
    torch.save(
        {"table": trainer.pruner.table.state_dict(), "local": local.counts, "support": buffers},
        Path(out) / f"rank{rank}.pt",
    )
    cleanup()


class _LocalCounts(Callback):
    """How often this process trained each sample: the local part of every step it was
    handed (``on_step_end``'s outcome)."""

    def __init__(self, num_samples: int) -> None:
        self.counts = torch.zeros(num_samples, dtype=torch.long)

    def on_step_end(self, trainer: Trainer, step: StepOutcome) -> None:
        self.counts[step.batch.local.cpu()] += 1


class _StopAfter(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer: Trainer, step: StepOutcome) -> None:
        if trainer.state.step == self.step:
            trainer.stop.signal_name = "SIGTERM"


def _spawn(
    tmp_path: Path,
    overrides: list[str],
    fail_rank: int = -1,
    diverge_rank: int = -1,
    stop_rank: int = -1,
) -> list[dict]:
    run_dir = tmp_path / "ddp"
    mp.spawn(
        _worker,
        args=(
            2,
            _free_port(),
            str(run_dir),
            overrides,
            str(tmp_path),
            fail_rank,
            diverge_rank,
            stop_rank,
        ),
        nprocs=2,
        join=True,
    )
    return [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)]


def test_shards_are_disjoint_and_cover_the_batch() -> None:
    batch = torch.randperm(23)
    views = [GlobalBatch.shard(batch, rank=r, world_size=3) for r in range(3)]
    shards = [view.local for view in views]
    assert sorted(torch.cat(shards).tolist()) == sorted(batch.tolist())
    assert [len(s) for s in shards] == shard_sizes(23, 3) == [8, 8, 7]
    assert all(torch.equal(view.gathered, torch.cat(shards)) for view in views)
    assert all(view.sizes == [8, 8, 7] and len(view) == 23 for view in views)
    assert torch.equal(shards[1], batch[1::3])


def test_two_ranks_hold_identical_tables_and_train_disjoint_shards(tmp_path: Path) -> None:
    ranks = _spawn(tmp_path, [*DDP_OVERRIDES, "train.epochs=1", "pruning.warmup_epochs=0"])
    first, second = (r["table"] for r in ranks)
    for name in first:
        assert torch.equal(first[name].nan_to_num(-7), second[name].nan_to_num(-7)), name
    local0, local1 = ranks[0]["local"], ranks[1]["local"]
    assert int((local0 * local1).sum()) == 0  # disjoint
    assert torch.equal(local0 + local1, first["train_count"])  # union = the kept set
    assert int(first["train_count"].sum()) == 24  # K = ceil(0.5 * 48)


@pytest.mark.parametrize("layout", ["views", "compact"])
def test_two_process_effective_rate_equals_one_process(tmp_path: Path, layout: str) -> None:
    overrides = [
        *DDP_OVERRIDES,
        "train.epochs=3",
        "memory.estimator=bank",
        "memory.k=4",
        f"memory.bank_layout={layout}",
    ]
    ranks = _spawn(tmp_path, overrides)
    assert torch.equal(ranks[0]["table"]["memory"], ranks[1]["table"]["memory"])
    single = build_trainer(
        load_config(None, [*TINY_OVERRIDES, *overrides, f"run.dir={tmp_path / 'single'}"])
    )
    single.fit()
    two = metrics_records(tmp_path / "ddp")
    one = metrics_records(tmp_path / "single")
    assert len(two) == 3  # rank 0 alone writes
    assert [r["effective_rate"] for r in two] == [r["effective_rate"] for r in one]
    assert [r["visits"] for r in two] == [r["visits"] for r in one]
    checkpoint = torch.load(
        list_checkpoints(tmp_path / "ddp" / "checkpoints")[-1], weights_only=False
    )
    assert checkpoint["world_size"] == 2 and len(checkpoint["rng"]) == 2


@pytest.mark.parametrize(
    "method",
    [
        ["method.name=byol", "augment.preset=byol"],
        ["method.name=simsiam"],
        ["method.name=nnclr", "method.support_size=20"],
    ],
    ids=["byol", "simsiam", "nnclr"],
)
def test_the_new_methods_train_alike_on_two_ranks(tmp_path: Path, method: list[str]) -> None:
    """Two ranks keep identical score tables (and NNCLR identical support sets, filled with
    the global batch) and spend the budget of one process."""
    overrides = [*DDP_OVERRIDES, *method, "train.epochs=2"]
    ranks = _spawn(tmp_path, overrides)
    for name in ranks[0]["table"]:
        first, second = ranks[0]["table"][name], ranks[1]["table"][name]
        assert torch.equal(first.nan_to_num(-7), second.nan_to_num(-7)), name
    for name, value in ranks[0]["support"].items():
        assert torch.equal(value, ranks[1]["support"][name]), name
    if "method.name=nnclr" in method:
        assert int(ranks[0]["support"]["support.filled"]) == 20  # 8 per global step, capped
    single = build_trainer(
        load_config(None, [*TINY_OVERRIDES, *overrides, f"run.dir={tmp_path / 'single'}"])
    )
    single.fit()
    two, one = metrics_records(tmp_path / "ddp"), metrics_records(tmp_path / "single")
    assert [r["visits"] for r in two] == [r["visits"] for r in one]
    assert [r["effective_rate"] for r in two] == [r["effective_rate"] for r in one]


def test_a_failing_rank_ends_the_job_in_bounded_time(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(mp.ProcessRaisedException, match="simulated failure on rank 1"):
        _spawn(tmp_path, [*DDP_OVERRIDES, "train.epochs=2"], fail_rank=1)
    assert time.monotonic() - started < 90


@pytest.mark.slow
def test_torchrun_cli_and_world_size_check_on_resume(tmp_path: Path) -> None:
    run_dir = tmp_path / "torchrun"
    pretrain = pretrain_command(
        *TINY_OVERRIDES,
        "data.subset=null",
        "method.name=moco",
        "method.queue_size=32",
        "augment.preset=mocov2",
        *DDP_OVERRIDES,
        "train.threads=1",
        f"run.dir={run_dir}",
    )[1:]  # "-m ssl_emp ...", for the launcher and for a plain interpreter
    launcher = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={_free_port()}",
    ]
    result = subprocess.run([*launcher, *pretrain], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("pretraining moco") == 1  # rank 0 alone logs
    assert (run_dir / "scores.npz").is_file()
    resume = subprocess.run(
        [sys.executable, *pretrain, "--resume"], capture_output=True, text=True, timeout=120
    )
    assert resume.returncode == 2
    assert "written by 2 process(es) but this run has 1" in resume.stderr


def test_ranks_that_select_differently_stop_with_a_clear_error(tmp_path: Path) -> None:
    overrides = [*DDP_OVERRIDES, "pruning.policy=topk", "pruning.warmup_epochs=0"]
    with pytest.raises(mp.ProcessRaisedException, match="selected different samples for epoch 1"):
        _spawn(tmp_path, overrides, diverge_rank=1)
    assert not (tmp_path / "ddp" / "metrics.jsonl").exists()


@pytest.mark.parametrize(("every", "stopped_at"), [(1, 4), (5, 5)])
def test_a_stop_signal_on_one_rank_stops_every_rank_at_the_same_step(
    tmp_path: Path, every: int, stopped_at: int
) -> None:
    """Rank 1 gets the signal after step 4; the ranks ask each other every ``every`` steps,
    so they stop together at the first step that is a multiple of it."""
    overrides = [*DDP_OVERRIDES, "train.epochs=2", f"train.stop_check_every={every}"]
    with pytest.raises(mp.ProcessRaisedException, match="RunPreempted: stopped by"):
        _spawn(tmp_path, overrides, stop_rank=1)
    names = [p.name for p in list_checkpoints(tmp_path / "ddp" / "checkpoints")]
    assert names[-1] == f"epoch_0001_step_{stopped_at:08d}.pt"  # 6 steps per epoch: epoch 1
    checkpoint = torch.load(tmp_path / "ddp" / "checkpoints" / names[-1], weights_only=False)
    assert checkpoint["state"]["step"] == stopped_at and len(checkpoint["rng"]) == 2


def test_two_ranks_from_a_raw_store_train_like_two_ranks_from_memory(tmp_path: Path) -> None:
    from ssl_emp.data.prepare import prepare_store

    store = tmp_path / "store"
    data = load_config(None, TINY_OVERRIDES).data
    prepare_store(data, seed=0, out=str(store), log=lambda _: None)
    overrides = [*DDP_OVERRIDES, "train.epochs=2", "pruning.warmup_epochs=0"]
    memory = _spawn(tmp_path / "memory", overrides)
    streamed = _spawn(
        tmp_path / "store_run",
        [*overrides, "data.source=store", f"data.root={store}", "data.workers=1"],
    )
    for from_memory, from_store in zip(memory, streamed, strict=True):
        assert torch.equal(from_memory["local"], from_store["local"])  # the same shards
        for name, values in from_memory["table"].items():
            assert torch.equal(values.nan_to_num(-7), from_store["table"][name].nan_to_num(-7))
