"""``ssl-emp pretrain`` and ``ssl-emp train-supervised``, and the evaluations of a run
(``linear-probe``, ``knn``): each parser with its handler."""

from __future__ import annotations

import argparse

from ssl_emp.cli.common import CONFIG_HELP, add_run_flags, is_main_process, run_overrides
from ssl_emp.config import describe_options, load_config


def add_commands(
    commands: argparse._SubParsersAction, formatter: type[argparse.HelpFormatter]
) -> None:
    """Add the training and evaluation parsers, each with its handler."""
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
    add_run_flags(pretrain)

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
    add_run_flags(supervised)

    pretrain.set_defaults(handler=run_pretrain)
    supervised.set_defaults(handler=run_train_supervised)

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
        evaluation.set_defaults(handler=run_evaluation)


def run_pretrain(args: argparse.Namespace) -> None:
    """Train (or resume) a self-supervised run."""
    from ssl_emp.experiments.train import pretrain

    run = pretrain(load_config(args.config, run_overrides(args)))
    if is_main_process():
        print(f"done: {run.path}")


def run_train_supervised(args: argparse.Namespace) -> None:
    """Train (or resume) a supervised run."""
    from ssl_emp.experiments.train import train_supervised

    run = train_supervised(load_config(args.config, run_overrides(args)))
    if is_main_process():
        print(f"done: {run.path}")


def run_evaluation(args: argparse.Namespace) -> None:
    """The linear probe or the kNN of a run's newest checkpoint."""
    from ssl_emp.eval import LinearProbe, WeightedKnn
    from ssl_emp.experiments.evaluate import evaluate_run

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
