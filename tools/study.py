"""The paired study: which selection rule beats random pruning, and at which budget? Every
setting is an ``ssl-emp sweep`` (restartable: finished runs are skipped, interrupted ones
resumed) followed by ``ssl-emp compare`` against random (report.md with paired differences,
95 % t-intervals and a verdict per variant on the probe and kNN; paired.csv; plots) in
``DIR/SETTING``. Run it from a git worktree pinned at one commit, so that changes to the
toolkit cannot change an experiment half-way, and record that commit with the results.

    git worktree add ../study HEAD && cd ../study
    nohup ../main/.venv/bin/python tools/study.py --only ssl_direction > study.log 2>&1 &
    .venv/bin/python tools/study.py --subset 600 --batch-size 64 --epochs 2 --seeds 0,1 \
        --headline-seeds 0,1 --dir /tmp/s --only ssl_direction     # smoke

Several processes can share one study: started with ``--share``, the same command N times
(one per core or GPU), each trains the next run of a setting that no other process holds
(``ssl-emp sweep --share``; runs lock their directories, so no run is trained twice), so a
long run in one process does not leave the others idle at the end. ``--shard 0/2`` and
``--shard 1/2`` instead split each setting's runs statically (every other run). Steps that
need every run of a setting (random at a matched rate, the choice of the best rules) wait for
the other processes. The runs random is matched to come first, so that wait is short.

Rules that keep a budget of their own (InfoBatch, SCAN) are paired with random at the
effective rate they reached: once their runs are done, random is trained at the nominal rate
whose effective rate matches theirs, with the same seeds (``compare`` pairs runs by budget).
"Full data at the same budget" is full data trained for the number of epochs that spends the
pruned runs' sample-visits.

Settings (10,000 Fashion-MNIST images, ``resnet_small`` width 16, 20 SSL epochs and 15
supervised, rate 0.7, unless said), most decisive first:

- ``ssl_direction``: SimCLR, 10 paired seeds: easy-first on the loss (``eps_greedy`` with
  ``pruning.direction=easy``), easy-first on EMP, ``scan``, ``prototypical``, against random
  (and random at SCAN's effective rate);
- ``ssl_budget``: the same-budget references of the SimCLR headline: full data for fewer
  epochs (10 seeds), InfoBatch against random at InfoBatch's effective rate (5 seeds),
  compared with ``ssl_direction``'s random runs;
- ``supervised_budget``, ``supervised_noise20_budget``: supervised (clean, and 20 % flipped
  labels), random, EMP (beta 3) and InfoBatch at 0.7, full data at the same budget, random
  at InfoBatch's effective rate, 5 seeds;
- ``ssl_long``: 5,000 images, 100 epochs, 5 seeds: random, EMP beta 1 and -1, the two rules
  with the largest mean probe gain over random in ``ssl_direction`` (or ``--long-rules``),
  full data and full data at the same budget;
- ``ssl_rate09``: rate 0.9, random against the same two rules, 5 seeds.

The settings of the earlier study (``headline``, ``ssl_policies``, ``supervised_noise20``,
``supervised``, ``moco``, ``ssl_beta``, ``ssl_projection``, ``ssl_rate05``, ``ssl_junk20``)
run with ``--only`` as before. If the budget is short, drop ``ssl_rate09`` first, then
``prototypical`` (``--drop-rules prototypical``); never the seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the worktree's own package, whatever is installed

from ssl_emp.config import load_config  # noqa: E402
from ssl_emp.experiments.compare import collect, compare  # noqa: E402
from ssl_emp.experiments.grid import SweepRun, plan_runs  # noqa: E402
from ssl_emp.experiments.paired import baseline_pairs  # noqa: E402
from ssl_emp.experiments.sweep import find_run_dirs, sweep  # noqa: E402
from ssl_emp.pruning import POLICIES  # noqa: E402
from ssl_emp.pruning.selection import keep_count  # noqa: E402

SIMCLR = "configs/simclr_fashion_mnist.yaml"
MOCO = "configs/moco_fashion_mnist.yaml"
SUPERVISED = "configs/supervised_fashion_mnist.yaml"
NEW_SETTINGS = (
    "ssl_direction",
    "ssl_budget",
    "supervised_budget",
    "supervised_noise20_budget",
    "ssl_long",
    "ssl_rate09",
)
# the selection rules of ssl_direction: name -> (policy, directions axis)
RULES: dict[str, tuple[str, list[str]]] = {
    "easy_loss": ("eps_greedy", ["easy"]),
    "easy_emp": ("emp", ["easy"]),
    "scan": ("scan", []),
    "prototypical": ("prototypical", []),
}


def rule_runs(rule: str, rate: float, seeds: list[int]) -> list[SweepRun]:
    """The sweep runs of one named rule."""
    policy, directions = RULES[rule]
    return plan_runs([policy], [rate], seeds, directions=directions)


def same_budget_epochs(samples: int, epochs: int, rate: float, warmup: int) -> int:
    """Epochs of full data that spend what a hard-rate run spends: ``warmup`` full epochs,
    then ``epochs - warmup`` of K = ceil((1 - rate) N) samples."""
    visits = samples * warmup + (epochs - warmup) * keep_count(samples, rate)
    return max(1, round(visits / samples))


def full_budget_runs(epochs: int, seeds: list[int]) -> list[SweepRun]:
    """Full data for ``epochs`` epochs, one run per seed."""
    return [
        SweepRun(f"full_e{epochs}_s{seed}", ("pruning.policy=full", f"train.epochs={epochs}",
                                             f"seed={seed}"))
        for seed in seeds
    ]  # fmt: skip


def settings(seeds: list[int], headline_seeds: list[int], rules: list[str]) -> dict[str, dict]:
    """Every setting: config, grid, shared overrides, and what it is compared with.

    Keys of a setting: ``config``; ``runs``; ``overrides``; optional ``subset`` and
    ``epochs`` (else the command line's); ``compare_with`` (other settings whose runs join
    the comparison); ``match_random`` (policies whose effective rate random is trained at
    afterwards, with the seeds of their runs); ``budget_seeds`` (full data at the same
    budget as the hard-rate runs at 0.7, these seeds); ``rules_from`` (the rules come from
    another setting's results).
    """

    def grid(policies: list[str], rate: float, chosen: list[int], **axes: list) -> list[SweepRun]:
        return plan_runs(policies, [rate], chosen, **axes)

    direction_rules = [rule for rule in RULES if rule in rules]
    return {
        "ssl_direction": {
            "config": SIMCLR,
            "runs": [
                *grid(["random"], 0.7, headline_seeds),
                *(run for rule in direction_rules for run in rule_runs(rule, 0.7, headline_seeds)),
            ],
            "overrides": [],
            "match_random": ["scan"],
        },
        "ssl_budget": {
            "config": SIMCLR,
            "runs": grid(["infobatch"], 0.7, seeds),
            "budget_seeds": headline_seeds,
            "overrides": [],
            "compare_with": ["ssl_direction"],
            "match_random": ["infobatch"],
        },
        "supervised_budget": {
            "config": SUPERVISED,
            "runs": grid(["random", "emp", "infobatch"], 0.7, seeds),
            "budget_seeds": seeds,
            "overrides": ["pruning.beta=3"],
            "match_random": ["infobatch"],
        },
        "supervised_noise20_budget": {
            "config": SUPERVISED,
            "runs": grid(["random", "emp", "infobatch"], 0.7, seeds),
            "budget_seeds": seeds,
            "overrides": ["pruning.beta=3", "data.label_noise=0.2"],
            "match_random": ["infobatch"],
        },
        "ssl_long": {
            "config": SIMCLR,
            "subset": 5000,
            "epochs": 100,
            "runs": [
                *grid(["full", "random"], 0.7, seeds),
                *grid(["emp"], 0.7, seeds, betas=[1.0, -1.0]),
            ],
            "budget_seeds": seeds,
            "rules_from": "ssl_direction",
            "rule_rate": 0.7,
            "overrides": [],
            "match_random": ["scan"],
        },
        "ssl_rate09": {
            "config": SIMCLR,
            "runs": grid(["random"], 0.9, seeds),
            "rules_from": "ssl_direction",
            "rule_rate": 0.9,
            "overrides": [],
            "match_random": ["scan"],
        },
        # --- the earlier study, kept runnable (docs/benchmarks.md, "Paired study") ---
        "headline": {
            "config": SIMCLR,
            "runs": grid(["random", "emp"], 0.7, headline_seeds),
            "overrides": [],
        },
        "ssl_policies": {
            "config": SIMCLR,
            "runs": [
                *grid(["full", "infobatch", "ucb", "eps_greedy"], 0.7, seeds),
                *grid(["emp"], 0.7, seeds, estimators=["bank"]),
            ],
            "overrides": [],
            "compare_with": ["headline"],
        },
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
        "ssl_beta": {
            "config": SIMCLR,
            "runs": grid(["emp"], 0.7, seeds, betas=[0.0, 3.0, -1.0]),
            "overrides": [],
            "compare_with": ["headline"],
        },
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


WAIT_S = 60.0  # between checks while waiting for the other shard


def wait_for(folder: Path, names: set[str], evaluated: bool, what: str) -> list[dict[str, Any]]:
    """The rows of ``folder`` once every run in ``names`` has finished (and, with
    ``evaluated``, has its probe result): runs of the other shard may still be training."""
    announced = False
    while True:
        rows = collect(find_run_dirs([str(folder)])) if folder.is_dir() else []
        done = {
            row["run"]
            for row in rows
            if (folder / row["run"] / "scores.npz").is_file()
            and (row["probe_top1"] is not None or not evaluated)
        }
        missing = sorted(names - done)
        if not missing:
            return rows
        if not announced:
            print(f"=== waiting for {len(missing)} runs of {folder} ({what})", flush=True)
            announced = True
        time.sleep(WAIT_S)


def best_rules(folder: Path, seeds: list[int], rules: list[str], count: int = 2) -> list[str]:
    """The ``count`` rules of ``ssl_direction`` with the largest mean paired probe gain over
    random (each paired with random of its own budget), once every run of ``rules`` with
    ``seeds`` in ``folder`` has its probe result."""
    names = {run.name for rule in rules for run in rule_runs(rule, 0.7, seeds)}
    rows = wait_for(folder, names, evaluated=True, what="the best rules")
    pairs = baseline_pairs(rows, "random")
    gains: dict[str, float] = {}
    for rule in rules:
        names = {run.name for run in rule_runs(rule, 0.7, seeds)}
        differences = [
            row["probe_top1"] - pairs[id(row)][0]["probe_top1"]
            for row in rows
            if row["run"] in names
            and id(row) in pairs
            and not pairs[id(row)][1]
            and row["probe_top1"] is not None
            and pairs[id(row)][0]["probe_top1"] is not None
        ]
        if differences:
            gains[rule] = sum(differences) / len(differences)
    if len(gains) < count:
        raise SystemExit(f"{folder}: finish ssl_direction first (rules with results: {gains})")
    ranked = sorted(gains, key=lambda rule: -gains[rule])
    print("ssl_direction mean probe gain over random: " + ", ".join(
        f"{rule} {100 * gains[rule]:+.2f}" for rule in ranked), flush=True)  # fmt: skip
    return ranked[:count]


def matched_rate(rows: list[dict[str, Any]], epochs: int, warmup: int) -> float:
    """The nominal rate at which random reaches the mean effective rate of ``rows``: random
    prunes ``rate`` in each of the ``epochs - warmup`` epochs after the warm-up."""
    effective = sum(row["effective_rate"] for row in rows) / len(rows)
    return round(min(0.99, effective * epochs / (epochs - warmup)), 3)


def runs_of(runs: list[SweepRun], policy: str) -> list[SweepRun]:
    """The runs of ``runs`` that train ``policy``."""
    return [run for run in runs if f"pruning.policy={policy}" in run.overrides]


def dependencies_first(runs: list[SweepRun], policies: list[str]) -> list[SweepRun]:
    """``runs`` with the runs of ``policies`` (those random is matched to afterwards) moved to
    the front, otherwise in their order. Each shard then trains its share of them first, and
    by the time it reaches the matched-rate step the other shard has finished its share too,
    instead of one shard idling until the other's last InfoBatch or SCAN run is done."""
    chosen = {run.name for policy in policies for run in runs_of(runs, policy)}
    first = [run for run in runs if run.name in chosen]
    return [*first, *(run for run in runs if run.name not in chosen)]


def run_setting(name: str, setting: dict, args: argparse.Namespace, rules: list[str]) -> None:
    """Train, evaluate and compare one setting (restartable)."""
    out = Path(args.dir) / name
    subset = setting.get("subset", args.subset)
    supervised = setting["config"] == SUPERVISED
    epochs = setting.get("epochs", args.supervised_epochs if supervised else args.epochs)
    common = [f"data.subset={subset}", f"train.epochs={epochs}", "train.progress=false"]
    if args.batch_size:
        common.append(f"train.batch_size={args.batch_size}")
    if args.threads:
        common.append(f"train.threads={args.threads}")
    overrides = [*common, *setting["overrides"]]
    config_path = str(ROOT / setting["config"])
    warmup = load_config(config_path, overrides).pruning.warmup_epochs
    runs = list(setting["runs"])
    if "rules_from" in setting:
        chosen = args.long_rules or best_rules(
            Path(args.dir) / setting["rules_from"], args.headline_seeds_list, rules
        )
        (out.parent / f"{name}_rules.json").parent.mkdir(parents=True, exist_ok=True)
        (out.parent / f"{name}_rules.json").write_text(json.dumps(chosen) + "\n")
        seeds = sorted({int(run.name.rsplit("_s", 1)[1].split("_")[0]) for run in runs})
        runs += [run for rule in chosen for run in rule_runs(rule, setting["rule_rate"], seeds)]
    if "budget_seeds" in setting:
        full_epochs = same_budget_epochs(subset, epochs, 0.7, warmup)
        runs += full_budget_runs(full_epochs, setting["budget_seeds"])
    started = time.perf_counter()
    runs = dependencies_first(runs, setting.get("match_random", []))
    mine = runs[args.shard_index :: args.shards]
    print(f"=== {name}: {len(mine)} of {len(runs)} runs -> {out}", flush=True)
    sweep(config_path, str(out), mine, overrides, evaluate=not args.no_eval, share=args.share)
    for policy in setting.get("match_random", []):
        planned = {run.name for run in runs_of(runs, policy)}
        if POLICIES[policy].hard_rate or not planned:
            continue
        rows = wait_for(out, planned, evaluated=False, what=f"{policy}'s effective rate")
        done = [row for row in rows if row["run"] in planned]
        rate = matched_rate(done, epochs, warmup)
        seeds = sorted({row["seed"] for row in done})
        print(f"=== {name}: random at {rate:g}, {policy}'s effective rate", flush=True)
        matched = plan_runs(["random"], [rate], seeds)[args.shard_index :: args.shards]
        sweep(
            config_path, str(out), matched, overrides, evaluate=not args.no_eval, share=args.share
        )
    others = [Path(args.dir) / other for other in setting.get("compare_with", [])]
    present = [str(path) for path in (out, *others) if path.is_dir()]
    compare(present, str(out))  # baseline: random, when present
    print(f"=== {name} done in {(time.perf_counter() - started) / 60:.1f} min", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default="runs/study")
    parser.add_argument("--subset", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=20, help="SSL epochs")
    parser.add_argument("--supervised-epochs", type=int, default=15)
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--headline-seeds", default="0,1,2,3,4,5,6,7,8,9")
    parser.add_argument(
        "--only",
        default=",".join(NEW_SETTINGS),
        help="comma-separated settings to run, in this order (default: %(default)s)",
    )
    parser.add_argument("--skip", default="", help="comma-separated settings to leave out")
    parser.add_argument(
        "--drop-rules", default="", help="comma-separated rules of ssl_direction to leave out"
    )
    parser.add_argument(
        "--long-rules",
        default="",
        help="rules for ssl_long and ssl_rate09 (default: the best two of ssl_direction)",
    )
    parser.add_argument("--batch-size", type=int, default=None, help="(default: the config's)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads per run (default: torch's choice); two study processes with "
        "--only and one thread each share a 2-core machine better than one with two",
    )
    parser.add_argument("--no-eval", action="store_true", help="train only (for smoke tests)")
    parser.add_argument(
        "--shard",
        default="0/1",
        help="I/N: train every N-th run of each setting, starting at I (two processes on one "
        "setting: 0/2 and 1/2)",
    )
    parser.add_argument(
        "--share",
        action="store_true",
        help="several processes run this same command: each trains the next run no other "
        "holds (balances runs of different lengths; not with --shard)",
    )
    args = parser.parse_args()
    if args.share and args.shard != "0/1":
        parser.error("--share and --shard exclude each other: --share balances the runs itself")
    index, _, count = args.shard.partition("/")
    args.shard_index, args.shards = int(index), int(count or 1)
    if not 0 <= args.shard_index < args.shards:
        parser.error(f"--shard {args.shard}: use I/N with 0 <= I < N")
    args.long_rules = [rule for rule in args.long_rules.split(",") if rule]
    seeds = [int(seed) for seed in args.seeds.split(",")]
    headline = [int(seed) for seed in args.headline_seeds.split(",")]
    args.headline_seeds_list = headline
    dropped = {rule for rule in args.drop_rules.split(",") if rule}
    unknown = (dropped | set(args.long_rules)) - set(RULES)
    if unknown:
        parser.error(f"unknown rules {sorted(unknown)}; choose from {', '.join(RULES)}")
    rules = [rule for rule in RULES if rule not in dropped]
    every = settings(seeds, headline, rules)
    chosen = [name for name in args.only.split(",") if name]
    skipped = {name for name in args.skip.split(",") if name}
    for name in chosen:
        if name not in every:
            parser.error(f"unknown setting {name!r}; choose from {', '.join(every)}")
    for name in chosen:
        if name not in skipped:
            run_setting(name, every[name], args, rules)


if __name__ == "__main__":
    main()
