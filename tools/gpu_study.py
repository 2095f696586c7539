"""The paired study at a scale the CPU cannot reach: Fashion-MNIST (all 60,000 training
images), ResNet-18 SimCLR, random vs EMP vs the selection rule that did best on the CPU
(``tools/study.py``'s ``ssl_direction``: easy-first EMP, ``--rules`` to choose others) at
rate 0.7, three paired seeds, sized for at most 9 minutes on one H200-class GPU with one
hard-rate rule. Prints the ``compare --baseline random`` table (paired differences, 95 %
t-intervals, verdicts). SCAN spends another budget (its effective rate is about 0.3 at 0.7),
so with ``scan`` among the rules random is also trained at SCAN's effective rate, as
``tools/study.py`` does; more rules or SCAN take longer than 9 minutes: run the same command
again, the sweep resumes where the time limit stopped it.

The GPU machine has no network: the data travels with the working tree. ``--copy-data``
copies the Debian package's IDX files into ``data/fashion-mnist/`` (ignored by git; name it
in the device tool's ``carry``) and the runs read them from there.

    python tools/gpu_study.py --copy-data      # here, before sending the tree
    bash tools/gpu_study.sh                    # on the GPU machine
    bash tools/gpu_study.sh --reduced          # a CPU smoke run (the tests run it)
    bash tools/gpu_study.sh --rules easy_emp,easy_loss   # two rules: run it twice
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "tools"))
from study import RULES, matched_rate, rule_runs  # noqa: E402

from ssl_emp.config import load_config  # noqa: E402
from ssl_emp.data.sources import FASHION_MNIST_DEFAULT_ROOT  # noqa: E402
from ssl_emp.experiments.compare import collect, compare  # noqa: E402
from ssl_emp.experiments.grid import SweepRun, plan_runs  # noqa: E402
from ssl_emp.experiments.sweep import find_run_dirs, sweep  # noqa: E402

LOCAL_DATA = ROOT / "data" / "fashion-mnist"
POLICIES = ["random", "emp"]
# the rule of ssl_direction with the largest paired probe gain over random of the same budget
# (+0.14, a tie: no rule beat random there; docs/benchmarks.md)
DEFAULT_RULES = "easy_emp"
FULL = {
    "seeds": [0, 1, 2],
    "overrides": [
        "data.subset=null",
        "model.backbone=resnet18",
        "train.epochs=25",
        "train.batch_size=512",
        "train.device=cuda",
        "eval.probe_epochs=50",
    ],
}
REDUCED = {
    "seeds": [0, 1],
    "overrides": [
        "data.subset=600",
        "data.test_subset=500",
        "model.width=4",
        "train.epochs=2",
        "train.batch_size=64",
        "train.device=cpu",
        "eval.probe_epochs=5",
    ],
}


def copy_data() -> None:
    """Copy Fashion-MNIST's IDX files next to the code, so they travel with the tree."""
    LOCAL_DATA.mkdir(parents=True, exist_ok=True)
    for source in Path(FASHION_MNIST_DEFAULT_ROOT).glob("*-ubyte.gz"):
        shutil.copy2(source, LOCAL_DATA / source.name)
    print(f"copied Fashion-MNIST into {LOCAL_DATA}")


def random_at_scan_rate(
    config: str, sweep_dir: str, overrides: list[str], seeds: list[int]
) -> list[SweepRun]:
    """Train random at the mean effective rate of the SCAN runs in ``sweep_dir`` (same
    seeds), so that ``compare`` pairs SCAN with a run of its own budget; returns those runs."""
    scan_dirs = [path for path in find_run_dirs([sweep_dir]) if path.name.startswith("scan_")]
    resolved = load_config(config, overrides)
    rate = matched_rate(
        collect(scan_dirs),
        resolved.train.epochs,
        resolved.pruning.warmup_epochs,
    )
    print(f"random at {rate:g}, SCAN's effective rate", flush=True)
    matched = plan_runs(["random"], [rate], seeds)
    sweep(config, sweep_dir, matched, overrides)
    return matched


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reduced", action="store_true", help="small CPU run (tests)")
    parser.add_argument("--copy-data", action="store_true", help="copy the data, then exit")
    parser.add_argument("--dir", default="runs/gpu_study")
    parser.add_argument(
        "--rules",
        default=DEFAULT_RULES,
        help=f"comma-separated selection rules next to random and EMP ({', '.join(RULES)})",
    )
    args = parser.parse_args()
    rules = [rule for rule in args.rules.split(",") if rule]
    unknown = [rule for rule in rules if rule not in RULES]
    if unknown:
        print(
            f"gpu_study.py: error: unknown rule {unknown[0]!r} in --rules; choose from "
            f"{', '.join(RULES)}",
            file=sys.stderr,
        )
        return 2
    if args.copy_data:
        copy_data()
        return 0
    size = REDUCED if args.reduced else FULL
    root = LOCAL_DATA if (LOCAL_DATA / "train-images-idx3-ubyte.gz").is_file() else None
    data = [f"data.root={root}"] if root else []
    started = time.perf_counter()
    runs = plan_runs(POLICIES, [0.7], size["seeds"])
    runs += [run for rule in rules for run in rule_runs(rule, 0.7, size["seeds"])]
    overrides = [*data, *size["overrides"], "train.progress=false"]
    config = ROOT / "configs" / "simclr_fashion_mnist.yaml"
    sweep(str(config), args.dir, runs, overrides)
    if "scan" in rules:
        runs += random_at_scan_rate(str(config), args.dir, overrides, size["seeds"])
    out = compare([args.dir], args.dir, baseline="random")
    report = (out / "report.md").read_text()
    section = report.split("## Paired differences vs random", 1)[1].split("## Runs", 1)[0]
    print("\n## Paired differences vs random" + section.rstrip())
    print(f"\n{len(runs)} runs in {(time.perf_counter() - started) / 60:.1f} min -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
