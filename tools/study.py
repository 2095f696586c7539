"""The paired study: where does the memory term help? Every setting is an ``ssl-emp sweep``
(restartable: finished runs are skipped, interrupted ones resumed) followed by
``ssl-emp compare --baseline random`` (report.md with paired differences, 95 % t-intervals and
a verdict per variant; paired.csv; plots) in ``DIR/SETTING``.

    nohup .venv/bin/python tools/study.py > runs/study.log 2>&1 &     # every setting
    .venv/bin/python tools/study.py --only headline                    # one setting
    .venv/bin/python tools/study.py --subset 600 --batch-size 64 --epochs 2 --seeds 0,1 \
        --headline-seeds 0,1 --dir /tmp/s                                # smoke

Settings (defaults: 10,000 Fashion-MNIST images, ``resnet_small`` width 16, 20 epochs for SSL
and 15 for supervised, paired seeds 0-4; the headline pair takes seeds 0-9):

- ``headline``: SimCLR, EMP vs random at rate 0.7, 10 paired seeds;
- ``ssl_policies``: SimCLR at 0.7, every policy (full, infobatch, ucb, eps_greedy, emp with the
  bank estimator; random and emp with the batch estimator are the headline's runs, compared
  from there: same config and seeds);
- ``supervised_noise20`` and ``supervised``: random, EMP (beta 3) and UCB at 0.7, with 20 %
  flipped labels and clean;
- ``moco``: MoCo v2, random vs EMP at 0.7;
- ``ssl_beta``: EMP at 0.7 with beta 0, 3, -1 (beta 1 is the headline's emp);
- ``ssl_projection``: EMP at 0.7 on the projection layer;
- ``ssl_rate05``: random vs EMP at 0.5;
- ``ssl_junk20``: SimCLR with 20 % of the training images replaced by junk, random,
  eps_greedy, ucb, EMP at 0.7 (reports the share of visits that went to junk).

Settings run in the order above (most decisive first). If the budget is short, drop in this
order (``--skip``): ``ssl_rate05``, beta -1, ``ssl_projection``; never the seeds.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ssl_emp.experiments.compare import compare
from ssl_emp.experiments.sweep import SweepRun, plan_runs, sweep

ROOT = Path(__file__).resolve().parent.parent
SIMCLR = "configs/simclr_fashion_mnist.yaml"
MOCO = "configs/moco_fashion_mnist.yaml"
SUPERVISED = "configs/supervised_fashion_mnist.yaml"


def settings(seeds: list[int], headline_seeds: list[int]) -> dict[str, dict]:
    """Every setting: config, grid and the overrides it adds."""

    def grid(policies: list[str], rate: float, chosen: list[int], **axes: list) -> list[SweepRun]:
        return plan_runs(policies, [rate], chosen, **axes)

    return {
        "headline": {
            "config": SIMCLR,
            "runs": grid(["random", "emp"], 0.7, headline_seeds),
            "overrides": [],
        },
        # random and emp with the default (batch) estimator are the headline's runs: same config,
        # same seeds, so they are compared from there rather than trained twice.
        "ssl_policies": {
            "config": SIMCLR,
            "runs": [
                *grid(["full", "infobatch", "ucb", "eps_greedy"], 0.7, seeds),
                *grid(["emp"], 0.7, seeds, estimators=["bank"]),
            ],
            "overrides": [],
            "compare_with": ["headline"],
        },
        # supervised: random, EMP and UCB (the loss-history baseline); eps_greedy and InfoBatch
        # were cut to fit the 2-core budget (InfoBatch spends another budget and is not paired)
        "supervised_noise20": {
            "config": SUPERVISED,
            "runs": grid(["random", "emp", "ucb"], 0.7, seeds),
            "overrides": ["pruning.beta=3", "data.label_noise=0.2"],
        },
        "supervised": {
            "config": SUPERVISED,
            "runs": grid(["random", "emp", "ucb"], 0.7, seeds),
            "overrides": ["pruning.beta=3"],
        },
        "moco": {"config": MOCO, "runs": grid(["random", "emp"], 0.7, seeds), "overrides": []},
        # beta 1 (the default) is the headline's emp; beta -1 runs last, the first to drop.
        "ssl_beta": {
            "config": SIMCLR,
            "runs": grid(["emp"], 0.7, seeds, betas=[0.0, 3.0, -1.0]),
            "overrides": [],
            "compare_with": ["headline"],
        },
        # random never reads the memory term, so the layer changes nothing for it: the emp runs
        # are paired with the headline's random runs (same config and seeds) instead.
        "ssl_projection": {
            "config": SIMCLR,
            "runs": grid(["emp"], 0.7, seeds),
            "overrides": ["memory.layer=projection"],
            "compare_with": ["headline"],
        },
        "ssl_rate05": {
            "config": SIMCLR,
            "runs": grid(["random", "emp"], 0.5, seeds),
            "overrides": [],
        },
        "ssl_junk20": {
            "config": SIMCLR,
            "runs": grid(["random", "eps_greedy", "ucb", "emp"], 0.7, seeds),
            "overrides": ["data.junk_fraction=0.2"],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default="runs/study")
    parser.add_argument("--subset", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=20, help="SSL epochs")
    parser.add_argument("--supervised-epochs", type=int, default=15)
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--headline-seeds", default="0,1,2,3,4,5,6,7,8,9")
    parser.add_argument("--only", default="", help="comma-separated settings to run")
    parser.add_argument("--skip", default="", help="comma-separated settings to leave out")
    parser.add_argument("--batch-size", type=int, default=None, help="(default: the config's)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads per run (default: torch's choice); two study processes with "
        "--only and one thread each share a 2-core machine better than one with two",
    )
    parser.add_argument("--no-eval", action="store_true", help="train only (for smoke tests)")
    args = parser.parse_args()
    seeds = [int(seed) for seed in args.seeds.split(",")]
    headline = [int(seed) for seed in args.headline_seeds.split(",")]
    chosen = [name for name in args.only.split(",") if name]
    skipped = {name for name in args.skip.split(",") if name}
    for name, setting in settings(seeds, headline).items():
        if (chosen and name not in chosen) or name in skipped:
            continue
        epochs = args.supervised_epochs if setting["config"] == SUPERVISED else args.epochs
        common = [f"data.subset={args.subset}", f"train.epochs={epochs}", "train.progress=false"]
        if args.batch_size:
            common.append(f"train.batch_size={args.batch_size}")
        if args.threads:
            common.append(f"train.threads={args.threads}")
        started = time.perf_counter()
        out = Path(args.dir) / name
        print(f"=== {name}: {len(setting['runs'])} runs -> {out}", flush=True)
        sweep(
            str(ROOT / setting["config"]),
            str(out),
            setting["runs"],
            [*common, *setting["overrides"]],
            evaluate=not args.no_eval,
        )
        others = [Path(args.dir) / other for other in setting.get("compare_with", [])]
        present = [str(path) for path in (out, *others) if path.is_dir()]
        compare(present, str(out))  # baseline: random, when present
        print(f"=== {name} done in {(time.perf_counter() - started) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
