"""The ``ssl-emp`` command line.

Exit codes: 0 success, 2 bad input (one line on stderr, no traceback), 75 stopped by SIGTERM
or SIGUSR1 after writing a checkpoint (continue with ``--resume``; under ``torchrun`` every
process exits 0 instead, because torchrun turns any other code into its own failure, and the
run directory's ``preempted.json`` says the run stopped), 130 interrupted, 1 anything else.
Under ``torchrun`` only rank 0 prints.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence

from ssl_emp.cli.artifacts import ARTIFACT_COMMANDS, add_artifact_commands, run_artifact_command
from ssl_emp.collectives import cleanup
from ssl_emp.config import describe_options, load_config
from ssl_emp.engine.preemption import PREEMPTED_EXIT_CODE
from ssl_emp.errors import RunPreempted, TrainingDivergedError, UserInputError

CONFIG_HELP = (
    "overrides are dotted key=value pairs after the options, e.g. "
    "'train.epochs=5 data.subset=2000'. Config keys:\n"
)


def _add_run_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (dotted keys)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in run.dir from its newest checkpoint",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="delete an existing run.dir and start over"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    parser = argparse.ArgumentParser(
        prog="ssl-emp",
        description="Contrastive self-supervised pretraining with memory-aware data pruning.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    formatter = argparse.RawDescriptionHelpFormatter

    pretrain = commands.add_parser(
        "pretrain",
        help="self-supervised pretraining into a run directory",
        description="Pretrain an encoder (SimCLR or MoCo v2) as configured, with the "
        "configured pruning policy; writes config.yaml, metrics.jsonl, checkpoints/ and "
        "scores.npz into run.dir.",
        epilog=CONFIG_HELP + describe_options(),
        formatter_class=formatter,
    )
    pretrain.add_argument("-c", "--config", required=True, help="YAML config file (configs/)")
    _add_run_flags(pretrain)

    supervised = commands.add_parser(
        "train-supervised",
        help="supervised classification with the same pruning core",
        description="Train a classifier (per-sample cross-entropy, the prediction-entropy memory "
        "term) as configured; writes config.yaml, metrics.jsonl (with test_top1 per epoch), "
        "checkpoints/, scores.npz and eval.json (top1) into run.dir.",
        epilog=CONFIG_HELP + describe_options(),
        formatter_class=formatter,
    )
    supervised.add_argument(
        "-c", "--config", required=True, help="YAML config with method.name: supervised"
    )
    _add_run_flags(supervised)

    evaluations = {
        "linear-probe": (
            "linear probe on the frozen backbone of a run",
            "Extract frozen backbone features of a run's newest checkpoint once, train a linear "
            "classifier, print and write RUN_DIR/probe.json (top1 on the test split).",
            "overrides: eval.probe_epochs, eval.probe_lr, eval.probe_batch_size, "
            "eval.probe_weight_decay, train.device, train.threads",
        ),
        "knn": (
            "weighted kNN accuracy of the frozen backbone of a run",
            "Extract frozen backbone features of a run's newest checkpoint, classify the test "
            "split by similarity-weighted kNN on L2-normalised features (faiss, or torch when "
            "faiss is missing), print and write RUN_DIR/knn.json (top1).",
            "overrides: eval.knn_k (default 200), eval.knn_t (default 0.1), train.device, "
            "train.threads",
        ),
    }
    for name, (summary, description, epilog) in evaluations.items():
        evaluation = commands.add_parser(
            name, help=summary, description=description, epilog=epilog, formatter_class=formatter
        )
        evaluation.add_argument("run_dir", metavar="RUN_DIR", help="a pretraining run directory")
        evaluation.add_argument(
            "overrides", nargs="*", metavar="KEY=VALUE", help="eval.* overrides"
        )

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
        default="full,random,infobatch,ucb,eps_greedy,emp",
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
    sweep.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides for every run")

    compare = commands.add_parser(
        "compare",
        help="results.csv, report.md and plots for a sweep or a list of runs",
        description="Collect runs (a sweep directory or run directories) into results.csv, "
        "report.md (mean ± std over seeds) and PNG plots: accuracy vs effective pruning rate, "
        "memory-term distributions per rate over epochs, training-frequency histograms, cost. "
        "With a baseline policy (default: random when present) also paired differences: each "
        "run minus the baseline run of the same rate and seed, mean, 95 %% t-interval and "
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

    add_artifact_commands(commands, formatter, CONFIG_HELP + describe_options())

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
    return parser


NUMBER_LIST_OPTIONS = ("--betas", "--rates", "--seeds")
NEGATIVE_NUMBER_LIST = re.compile(r"-[0-9.]+(,-?[0-9.]*)*")


def attach_negative_lists(argv: Sequence[str]) -> list[str]:
    """``--betas -1,3`` as ``--betas=-1,3``: argparse reads a value that starts with '-' (and
    is not a single number) as a flag, so a list that starts with a negative number is joined
    to its option first."""
    tokens = list(argv)
    joined: list[str] = []
    position = 0
    while position < len(tokens):
        token = tokens[position]
        following = tokens[position + 1] if position + 1 < len(tokens) else ""
        if token in NUMBER_LIST_OPTIONS and NEGATIVE_NUMBER_LIST.fullmatch(following):
            joined.append(f"{token}={following}")
            position += 2
            continue
        joined.append(token)
        position += 1
    return joined


def _split(text: str, kind: type, flag: str) -> list:
    """Comma-separated values of ``kind`` (empty text gives an empty list)."""
    try:
        return [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserInputError(
            f"{flag} takes comma-separated {kind.__name__} values, got '{text}'"
        ) from None


def _run_overrides(args: argparse.Namespace) -> list[str]:
    flags = []
    if args.resume:
        flags.append("run.resume=true")
    if args.overwrite:
        flags.append("run.overwrite=true")
    return [*args.overrides, *flags]


def launched_by_torchrun() -> bool:
    """Whether this process is one rank of a ``torchrun`` job (torchrun sets these)."""
    return "TORCHELASTIC_RUN_ID" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main_process() -> bool:
    """Rank 0 of a ``torchrun`` job, or a single process: the one that reports."""
    return int(os.environ.get("RANK", "0")) == 0


def dispatch(args: argparse.Namespace) -> int:
    """Run the chosen sub-command."""
    if args.command == "pretrain":
        from ssl_emp.experiments.train import pretrain

        run = pretrain(load_config(args.config, _run_overrides(args)))
        if is_main_process():
            print(f"done: {run.path}")
    elif args.command == "train-supervised":
        from ssl_emp.experiments.train import train_supervised

        run = train_supervised(load_config(args.config, _run_overrides(args)))
        if is_main_process():
            print(f"done: {run.path}")
    elif args.command in ("linear-probe", "knn"):
        from ssl_emp.eval import LinearProbe, WeightedKnn, evaluate_run

        evaluator = LinearProbe() if args.command == "linear-probe" else WeightedKnn()
        result = evaluate_run(evaluator, args.run_dir, args.overrides)
        details = result.to_dict()
        if args.command == "linear-probe":
            summary = (
                f"linear probe top1 {100 * result.top1:.2f} % "
                f"(train {100 * details['train_top1']:.2f} %)"
            )
        else:
            summary = (
                f"kNN top1 {100 * result.top1:.2f} % (k={details['k']}, t={details['t']}, "
                f"{details['backend']})"
            )
        print(f"{summary} -> {args.run_dir}/{evaluator.name}.json")
    elif args.command == "sweep":
        from ssl_emp.experiments.sweep import plan_runs, sweep

        runs = plan_runs(
            policies=_split(args.policies, str, "--policies"),
            rates=_split(args.rates, float, "--rates"),
            seeds=_split(args.seeds, int, "--seeds"),
            betas=_split(args.betas, float, "--betas"),
            estimators=_split(args.estimators, str, "--estimators"),
            directions=_split(args.directions, str, "--directions"),
        )
        statuses = sweep(args.config, args.dir, runs, args.overrides, evaluate=not args.no_eval)
        print(
            f"done: {len(statuses)} runs in {args.dir}; compare them with "
            f"`ssl-emp compare {args.dir}`"
        )
    elif args.command == "compare":
        from ssl_emp.engine.run_dir import RunDirectory
        from ssl_emp.experiments.compare import compare

        single_sweep = len(args.paths) == 1 and not RunDirectory(args.paths[0]).config_path.exists()
        out = args.out or (args.paths[0] if single_sweep else "compare")
        out_dir = compare(args.paths, out, baseline=args.baseline)
        print(f"wrote {out_dir}/report.md, results.csv and plots")
    elif args.command in ARTIFACT_COMMANDS:
        run_artifact_command(args)
    elif args.command == "demo":
        from ssl_emp.experiments.demo import load_demo_config, run_demo

        run_demo(load_demo_config(args.config, args.overrides))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ssl-emp``; returns the exit code."""
    parser = build_parser()
    # parse_known_args lets overrides stand before and after flags (argparse alone stops
    # collecting a positional list at the first flag)
    tokens = attach_negative_lists(sys.argv[1:] if argv is None else argv)
    args, extras = parser.parse_known_args(tokens)
    unknown = [token for token in extras if token.startswith("-") or "=" not in token]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if extras:
        if not hasattr(args, "overrides"):
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
        args.overrides = [*args.overrides, *extras]
    main_rank = is_main_process()  # under torchrun rank 0 reports
    try:
        return dispatch(args)
    except UserInputError as error:
        if main_rank:
            print(f"ssl-emp: error: {error}", file=sys.stderr)
        return 2
    except TrainingDivergedError as error:
        if main_rank:
            print(f"ssl-emp: error: {error}", file=sys.stderr)
        return 1
    except RunPreempted as message:
        if main_rank:
            print(f"ssl-emp: {message}", file=sys.stderr)
        # torchrun reports any non-zero exit as its own failure (exit 1 and a traceback), so
        # its ranks exit 0 and preempted.json is the sign to requeue on
        return 0 if launched_by_torchrun() else PREEMPTED_EXIT_CODE
    except KeyboardInterrupt:
        print("ssl-emp: interrupted; resume with --resume", file=sys.stderr)
        return 130
    finally:
        cleanup()


if __name__ == "__main__":
    raise SystemExit(main())
