"""The accuracy study: EMP against random, InfoBatch, UCB and eps-greedy at 30/50/70 % pruning,
for SimCLR pretraining and supervised training (clean and with 20 % label noise), plus a beta
sweep for EMP at 70 %. Runs on CPU, in the background, restartable (finished runs are skipped):

    nohup .venv/bin/python tools/study.py > runs/study.log 2>&1 &
    .venv/bin/python tools/study.py --only ssl            # one part
    .venv/bin/python tools/study.py --subset 2000 --epochs 2 --seeds 0 --dir /tmp/s   # smoke

Each part is an ``ssl-emp sweep`` into ``DIR/PART`` followed by ``ssl-emp compare`` (report.md,
results.csv, plots in the same folder). Sizing (defaults): a class-balanced 5,000-image subset
of Fashion-MNIST, ``resnet_small`` width 16, 10 epochs, 2 seeds: about an hour on 2 otherwise
idle CPU cores.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ssl_emp.experiments.compare import compare
from ssl_emp.experiments.sweep import plan_runs, sweep

ROOT = Path(__file__).resolve().parent.parent
RATES = (0.3, 0.5, 0.7)
BETAS = (-1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0)
BASELINES = ("full", "random", "infobatch", "ucb", "eps_greedy")


def parts(seeds: list[int]) -> dict[str, dict]:
    """Every part of the study: config, grid and extra overrides."""
    return {
        "ssl": {
            "config": "configs/simclr_fashion_mnist.yaml",
            "runs": plan_runs([*BASELINES, "emp"], RATES, seeds, estimators=["batch", "bank"]),
            "overrides": [],
        },
        "supervised": {
            "config": "configs/supervised_fashion_mnist.yaml",
            "runs": plan_runs([*BASELINES, "emp"], RATES, seeds),
            "overrides": [],
        },
        "supervised_noise20": {
            "config": "configs/supervised_fashion_mnist.yaml",
            "runs": plan_runs([*BASELINES, "emp"], RATES, seeds),
            "overrides": ["data.label_noise=0.2"],
        },
        "beta_ssl": {
            "config": "configs/simclr_fashion_mnist.yaml",
            "runs": plan_runs(["emp"], [0.7], seeds, betas=BETAS),
            "overrides": [],
        },
        "beta_supervised_noise20": {
            "config": "configs/supervised_fashion_mnist.yaml",
            "runs": plan_runs(["emp"], [0.7], seeds, betas=BETAS),
            "overrides": ["data.label_noise=0.2"],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default="runs/study")
    parser.add_argument("--subset", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--only", default="", help="comma-separated parts to run")
    args = parser.parse_args()
    seeds = [int(seed) for seed in args.seeds.split(",")]
    chosen = [part for part in args.only.split(",") if part]
    common = [f"data.subset={args.subset}", f"train.epochs={args.epochs}", "train.progress=false"]
    for name, part in parts(seeds).items():
        if chosen and name not in chosen:
            continue
        started = time.perf_counter()
        out = Path(args.dir) / name
        print(f"=== {name}: {len(part['runs'])} runs -> {out}", flush=True)
        sweep(str(ROOT / part["config"]), str(out), part["runs"], [*common, *part["overrides"]])
        compare([str(out)], str(out))
        print(f"=== {name} done in {(time.perf_counter() - started) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
