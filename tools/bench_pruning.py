"""Cost of pruning, measured side by side in one run (machines are noisy).

1. Epoch wall time at pruning rates 0.3 / 0.5 / 0.7 (policy emp, batch memory) relative to a
   full-data epoch; target at most (1 - s) + 0.05.
2. Step overhead of the EMP step (per-sample loss + batch memory term + score-table update +
   weighted loss) against a plain SimCLR step (mean loss); target at most 3 %.
3. The bank estimator's end-of-epoch pass (centre, faiss index, k-NN of every sample, entropy)
   as a fraction of a full-data epoch; target at most 5 %.

    python tools/bench_pruning.py                  # Fashion-MNIST 10k subset, resnet_small
    python tools/bench_pruning.py --subset 60000   # the whole training split
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from ssl_emp.config import load_config
from ssl_emp.data import GlobalBatch, build_datasets, index_batches
from ssl_emp.engine.trainer import Trainer
from ssl_emp.experiments.train import build_trainer
from ssl_emp.pruning import FeatureBank

RATES = (0.0, 0.3, 0.5, 0.7)


def make_trainer(workdir: Path, name: str, overrides: list[str], train) -> Trainer:
    config = load_config(None, [*overrides, f"run.dir={workdir / name}"])
    trainer = build_trainer(config, train_data=train)
    # a scored table, as after warm-up: random losses and memory terms for every sample
    generator = torch.Generator().manual_seed(0)
    everyone = torch.arange(len(train))
    trainer.pruner.step(
        everyone,
        torch.rand(len(train), generator=generator) * 5,
        torch.rand(len(train), generator=generator),
        epoch=0,
    )
    return trainer


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subset", type=int, default=10000)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10, help="steps per block (overhead)")
    parser.add_argument("--k", type=int, default=32, help="bank neighbours")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench_pruning_"))
    base = [
        f"data.subset={args.subset}",
        f"model.width={args.width}",
        f"train.batch_size={args.batch_size}",
        f"train.device={args.device}",
        "train.progress=false",
        "train.epochs=1000",
        "pruning.warmup_epochs=0",
    ]
    config = load_config(None, base)
    train, _ = build_datasets(config.data, seed=0)
    print(
        f"{len(train)} Fashion-MNIST images, resnet_small width {args.width}, batch "
        f"{args.batch_size}, {torch.get_num_threads()} threads, device {args.device}"
    )

    # 1. epoch time per rate, alternating rounds
    trainers = {
        rate: make_trainer(
            workdir,
            f"rate{rate}",
            [
                *base,
                "pruning.policy=emp" if rate else "pruning.policy=full",
                f"pruning.rate={rate or 0.5}",
            ],
            train,
        )
        for rate in RATES
    }
    epoch_time = dict.fromkeys(RATES, 0.0)
    for _ in range(args.rounds):
        for rate, trainer in trainers.items():
            epoch_time[rate] += timed(trainer.train_epoch)
    print("\n1. epoch wall time relative to full data (policy emp, batch memory)")
    print(f"   full: {epoch_time[0.0] / args.rounds:.2f} s/epoch")
    for rate in RATES[1:]:
        ratio = epoch_time[rate] / epoch_time[0.0]
        target = 1 - rate + 0.05
        verdict = "ok" if ratio <= target else "MISSED"
        print(
            f"   rate {rate}: {epoch_time[rate] / args.rounds:.2f} s/epoch, ratio {ratio:.3f} "
            f"(target <= {target:.2f}: {verdict})"
        )

    # 2. step overhead: trainer.train_step (EMP) vs a plain SimCLR step, alternating blocks
    emp = trainers[0.7]
    model, optimizer = emp.model, emp.optimizer
    batches = index_batches(
        torch.arange(len(train), device=emp.device),
        args.batch_size,
        generator=torch.Generator().manual_seed(1),
    )

    def plain_block() -> None:
        for batch in batches[: args.steps]:
            loss = model(emp.data.images[batch], emp.data.labels[batch]).loss.mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    def emp_block() -> None:
        for batch in batches[: args.steps]:
            emp.train_step(GlobalBatch.single(batch), progress=0.5)

    plain_block()
    emp_block()
    plain_time = emp_time = 0.0
    for _ in range(args.rounds * 2):
        plain_time += timed(plain_block)
        emp_time += timed(emp_block)
    overhead = emp_time / plain_time - 1
    print("\n2. step overhead of EMP (batch memory + score table) over a plain SimCLR step")
    print(
        f"   plain {plain_time / (args.rounds * 2 * args.steps) * 1000:.1f} ms/step, EMP "
        f"{emp_time / (args.rounds * 2 * args.steps) * 1000:.1f} ms/step, overhead "
        f"{100 * overhead:+.2f} % (target <= 3 %: {'ok' if overhead <= 0.03 else 'MISSED'})"
    )

    # 3. bank pass over all N samples vs a full-data epoch
    bank_trainer = make_trainer(
        workdir,
        "bank",
        [
            *base,
            "pruning.policy=emp",
            "pruning.rate=0.7",
            "memory.estimator=bank",
            f"memory.k={args.k}",
        ],
        train,
    )
    bank = bank_trainer.estimator
    assert isinstance(bank, FeatureBank)
    bank.refresh(bank_trainer.embed)  # every row written

    def bank_pass() -> None:
        columns, _ = bank.end_epoch(0, embed=bank_trainer.embed)
        bank_trainer.pruner.set_columns(columns)

    bank_time = 0.0
    for _ in range(args.rounds):
        bank_time += timed(bank_pass)
    fraction = bank_time / epoch_time[0.0]
    print(
        f"\n3. bank pass (faiss IndexFlatIP, k={args.k}, {len(train)} x "
        f"{bank.bank.dim} features) vs a full-data epoch"
    )
    print(
        f"   {bank_time / args.rounds:.3f} s per pass = {100 * fraction:.2f} % of a full epoch "
        f"(target <= 5 %: {'ok' if fraction <= 0.05 else 'MISSED'})"
    )
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
