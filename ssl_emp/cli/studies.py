"""``ssl-emp sweep``, ``ssl-emp compare`` and ``ssl-emp demo``: each parser with its
handler."""

from __future__ import annotations

import argparse

from ssl_emp.cli.common import CONFIG_HELP, split_list
from ssl_emp.config import describe_options
from ssl_emp.pruning import POLICIES


def add_commands(
    commands: argparse._SubParsersAction, formatter: type[argparse.HelpFormatter]
) -> None:
    """Add the sweep, compare and demo parsers, each with its handler."""
    sweep = commands.add_parser(
        "sweep",
        help="grid of policies x pruning rates x seeds, each trained and evaluated",
        description="Train one run per grid cell under --dir (named POLICY_rRATE_sSEED[_bBETA]"
        "[_ESTIMATOR][_DIRECTION]; full data once per seed), then linear probe and kNN on each "
        "SSL run. "
        "Re-running the same command skips finished runs and resumes unfinished ones. "
        "Writes DIR/sweep.json.",
        epilog=CONFIG_HELP + describe_options(),
        formatter_class=formatter,
    )
    sweep.add_argument("-c", "--config", required=True, help="base YAML config")
    sweep.add_argument("--dir", required=True, help="sweep directory (created)")
    sweep.add_argument(
        "--policies",
        default=",".join(name for name, policy in POLICIES.items() if policy.in_default_sweep),
        help="comma-separated policies (default: %(default)s)",
    )
    sweep.add_argument(
        "--rates",
        default="0.3,0.5,0.7",
        help="comma-separated pruning rates (default: %(default)s)",
    )
    sweep.add_argument("--seeds", default="0", help="comma-separated seeds (default: %(default)s)")
    sweep.add_argument("--betas", default="", help="comma-separated beta values for emp (optional)")
    sweep.add_argument(
        "--estimators", default="", help="comma-separated memory estimators for emp: batch,bank"
    )
    sweep.add_argument(
        "--directions",
        default="",
        help="comma-separated directions for the policies that rank a score (topk, "
        "eps_greedy, emp, prototypical): hard (keep the highest), easy (keep the lowest)",
    )
    sweep.add_argument("--no-eval", action="store_true", help="skip the probe and kNN")
    sweep.add_argument(
        "--share",
        action="store_true",
        help="several processes run this same command (one per core or GPU): each trains "
        "the next run no other holds and skips the ones they hold, instead of stopping",
    )
    sweep.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides for every run")

    compare = commands.add_parser(
        "compare",
        help="results.csv, report.md and plots for a sweep or a list of runs",
        description="Collect runs (a sweep directory or run directories) into results.csv, "
        "report.md (mean ± std over seeds) and PNG plots: accuracy vs effective pruning rate, "
        "memory-term distributions per rate over epochs, training-frequency histograms, cost. "
        "With a baseline policy (default: random when present) also paired differences: each "
        "run minus the baseline run of the same seed and budget (InfoBatch and SCAN meet random "
        "at their effective rate), mean, 95 % t-interval and "
        "wins/ties/losses per variant (report.md, paired.csv, paired_differences.png).",
        formatter_class=formatter,
    )
    compare.add_argument("paths", nargs="+", metavar="PATH", help="sweep or run directories")
    compare.add_argument(
        "--baseline",
        default=None,
        metavar="POLICY",
        help="policy to pair every variant against (default: random when present)",
    )
    compare.add_argument(
        "--out",
        default=None,
        help="output directory (default: the sweep directory, else ./compare)",
    )
    sweep.set_defaults(handler=run_sweep)
    compare.set_defaults(handler=run_compare)

    demo = commands.add_parser(
        "demo",
        help="SimCLR on Fashion-MNIST: full data vs random vs EMP pruning at 0.7, probed",
        description="Pretrain SimCLR on Fashion-MNIST with the small backbone three times with "
        "the same seed (full data, random pruning at rate 0.7, EMP at rate 0.7; 15 epochs), "
        "then print each run's linear-probe accuracy, effective pruning rate and wall time "
        "next to the probe of a randomly initialised backbone. Writes runs/demo/{full,"
        "random_r0.7,emp_r0.7} and runs/demo/demo.json (replaced each time).",
        epilog=CONFIG_HELP + describe_options(),
        formatter_class=formatter,
    )
    demo.add_argument(
        "-c",
        "--config",
        default=None,
        help="config file (default configs/simclr_fashion_mnist.yaml)",
    )
    demo.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    demo.set_defaults(handler=run_demo)


def run_sweep(args: argparse.Namespace) -> None:
    """Train and evaluate every cell of the grid that is not done yet."""
    from ssl_emp.experiments.grid import plan_runs
    from ssl_emp.experiments.sweep import sweep

    runs = plan_runs(
        policies=split_list(args.policies, str, "--policies"),
        rates=split_list(args.rates, float, "--rates"),
        seeds=split_list(args.seeds, int, "--seeds"),
        betas=split_list(args.betas, float, "--betas"),
        estimators=split_list(args.estimators, str, "--estimators"),
        directions=split_list(args.directions, str, "--directions"),
    )
    statuses = sweep(
        args.config, args.dir, runs, args.overrides, evaluate=not args.no_eval, share=args.share
    )
    held = len(runs) - len(statuses)
    others = f" ({held} held by other processes)" if held else ""
    print(
        f"done: {len(statuses)} runs in {args.dir}{others}; compare them with "
        f"`ssl-emp compare {args.dir}`"
    )


def run_compare(args: argparse.Namespace) -> None:
    """Tables, paired differences and plots of a sweep or of run directories."""
    from ssl_emp.engine.run_dir import RunDirectory
    from ssl_emp.experiments.compare import compare

    single_sweep = len(args.paths) == 1 and not RunDirectory(args.paths[0]).config_path.exists()
    out = args.out or (args.paths[0] if single_sweep else "compare")
    out_dir = compare(args.paths, out, baseline=args.baseline)
    print(f"wrote {out_dir}/report.md, results.csv and plots")


def run_demo(args: argparse.Namespace) -> None:
    """The SimCLR demo: full data, random and EMP pruning, probed."""
    from ssl_emp.experiments.demo import load_demo_config
    from ssl_emp.experiments.demo import run_demo as demo

    demo(load_demo_config(args.config, args.overrides))
