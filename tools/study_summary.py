"""One verdict table for the whole study: in each setting, does EMP (or, in the settings of
the selection rules, any rule) beat random and the best baseline, with a 95 % paired
interval that excludes zero? SSL rows also give the kNN verdict against random. Unfinished
settings are summarised over the runs they have.

For every setting directory of ``tools/study.py`` it collects the runs (with the settings
they are compared with), takes the setting's metric (linear probe for SSL, test top-1 for
supervised runs) and pairs every EMP variant with ``random`` and with the best other policy
that spent the same budget (the hard-rate policies random, ucb and eps_greedy with the
highest mean; InfoBatch spends another budget and is left out), at the same seed. Prints a
markdown table (and writes it to ``DIR/summary.md``). ``--export OUT`` also writes, for every
setting with finished runs, ``OUT/<setting>_results.csv`` and ``OUT/<setting>_paired.csv``
(``compare --baseline random`` over the runs that have their metric; a setting still running
is exported over what it has).

    python tools/study_summary.py                 # runs/study
    python tools/study_summary.py --dir ../study/runs/study --export docs/study
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from statistics import mean

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study import RULES, settings  # noqa: E402

from ssl_emp.experiments.compare import collect, compare  # noqa: E402
from ssl_emp.experiments.paired import PairedResult, paired_results  # noqa: E402
from ssl_emp.experiments.sweep import find_run_dirs  # noqa: E402

BASELINES = ("random", "ucb", "eps_greedy")
# settings that test other rules than EMP (direction, SCAN, prototypicality, budgets): every
# variant is listed there, not only the EMP ones
RULE_SETTINGS = (
    "ssl_direction",
    "ssl_budget",
    "supervised_budget",
    "supervised_noise20_budget",
    "ssl_long",
    "ssl_rate09",
)


def interval(result: PairedResult) -> str:
    """``+0.13 [-0.09, +0.34] tie`` in points."""
    if result.ci_low is None or result.ci_high is None:
        return f"{100 * result.mean:+.2f} (n={len(result.differences)})"
    return (
        f"{100 * result.mean:+.2f} [{100 * result.ci_low:+.2f}, {100 * result.ci_high:+.2f}] "
        f"{result.verdict}"
    )


def run_dirs(folder: Path) -> list[Path]:
    """The run directories in ``folder``; none while it does not exist or its first run has
    not written its config yet (a sweep creates the folder first)."""
    if not folder.is_dir() or not any(folder.glob("*/config.yaml")):
        return []
    return find_run_dirs([str(folder)])


def setting_rows(root: Path, name: str, setting: dict) -> tuple[list[dict], set[str], str]:
    """The rows of a setting's runs and of the settings it is compared with, the run
    directories that are the setting's own, and its metric (test top-1 for supervised runs,
    else the linear probe)."""
    own = run_dirs(root / name)
    others = [path for other in setting.get("compare_with", []) for path in run_dirs(root / other)]
    rows = collect([*own, *others]) if own else []
    metric = "test_top1" if any(r["method"] == "supervised" for r in rows) else "probe_top1"
    return rows, {str(path) for path in own}, metric


def planned_rates(setting: dict) -> set[float]:
    """The nominal rates of a setting's grid, without the rates random is trained at later to
    match another policy's budget."""
    prefix = "pruning.rate="
    return {
        float(override.removeprefix(prefix))
        for run in setting["runs"]
        for override in run.overrides
        if override.startswith(prefix)
    }


def summarise(root: Path) -> list[str]:
    """Markdown lines of the verdict table for every finished setting under ``root``."""
    lines = [
        "| setting | metric | variant | n | vs random | best baseline | vs best baseline "
        "| kNN vs random |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, setting in settings([0], [0], list(RULES)).items():
        rows, own_dirs, metric = setting_rows(root, name, setting)
        rows = [r for r in rows if r[metric] is not None]
        rates = planned_rates(setting)
        baseline_rows = [r for r in rows if r["variant"] in BASELINES and r["rate"] in rates]
        present = [p for p in BASELINES if any(r["variant"] == p for r in baseline_rows)]
        seeds = (
            set.intersection(
                *({r["seed"] for r in baseline_rows if r["variant"] == p} for p in present)
            )
            if present
            else set()
        )
        means = {  # over the seeds every baseline has, so the choice is paired too
            policy: mean(
                r[metric] for r in baseline_rows if r["variant"] == policy and r["seed"] in seeds
            )
            for policy in present
        }
        if "random" not in means:
            continue
        best = max(means, key=lambda policy: means[policy])
        against_random = {r.variant: r for r in paired_results(rows, "random", [metric])}
        knn_against_random = (  # SSL runs: the kNN verdict beside the probe's
            {r.variant: r for r in paired_results(rows, "random", ["knn_top1"])}
            if metric == "probe_top1"
            else {}
        )
        against_best = {r.variant: r for r in paired_results(rows, best, [metric])}
        # variants trained in this setting (those of compare_with settings have their own rows)
        own = {r["variant"] for r in rows if r["dir"] in own_dirs}
        for variant, result in against_random.items():
            if variant not in own or (not variant.startswith("emp") and name not in RULE_SETTINGS):
                continue
            if variant == best:
                versus_best = "(is the best baseline)"
            elif best == "random":
                versus_best = "(is random)"
            else:
                versus_best = interval(against_best[variant])
            knn = knn_against_random.get(variant)
            lines.append(
                f"| {name} | {metric} | {variant} | {len(result.differences)} | "
                f"{interval(result)} | {best} ({100 * means[best]:.2f}) | {versus_best} | "
                f"{interval(knn) if knn is not None else ''} |"
            )
    return lines


def setting_tables(root: Path) -> list[str]:
    """Each finished setting's per-variant table, copied from its ``report.md``."""
    lines: list[str] = []
    for name in settings([0], [0], list(RULES)):
        report = root / name / "report.md"
        if not report.is_file():
            continue
        table = [line for line in report.read_text().split("## ")[0].splitlines() if "|" in line]
        lines += ["", f"**{name}**", "", *table]
    return lines


def export(root: Path, out: Path) -> list[Path]:
    """Write each setting's results and paired differences into ``out``.

    A setting's CSVs hold its own finished runs and the finished random runs of the settings
    it is compared with (its baseline), so no variant appears in two settings' files.

    Returns:
        The files written.
    """
    written: list[Path] = []
    out.mkdir(parents=True, exist_ok=True)
    for name, setting in settings([0], [0], list(RULES)).items():
        rows, own_dirs, metric = setting_rows(root, name, setting)
        finished = [
            r
            for r in rows
            if r[metric] is not None and (r["dir"] in own_dirs or r["policy"] == "random")
        ]
        if not any(r["dir"] in own_dirs for r in finished) or not any(
            r["policy"] == "random" for r in finished
        ):
            continue
        with tempfile.TemporaryDirectory() as scratch:
            report = compare([str(r["dir"]) for r in finished], scratch, baseline="random")
            for kind in ("results", "paired"):
                target = out / f"{name}_{kind}.csv"
                shutil.copyfile(report / f"{kind}.csv", target)
                written.append(target)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default="runs/study")
    parser.add_argument("--tables", action="store_true", help="also each setting's own table")
    parser.add_argument("--export", default=None, help="write each setting's CSVs here")
    args = parser.parse_args()
    if args.export:
        for path in export(Path(args.dir), Path(args.export)):
            print(f"wrote {path}")
    lines = summarise(Path(args.dir))
    if args.tables:
        lines += setting_tables(Path(args.dir))
    text = "\n".join(lines) + "\n"
    (Path(args.dir) / "summary.md").write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
