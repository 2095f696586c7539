"""Evaluating a run directory: its config (with ``eval.*`` overrides), data and the backbone
of its newest checkpoint, then a probe or kNN (:mod:`ssl_emp.eval`) whose result goes into
``RUN_DIR/<evaluator>.json``."""

from __future__ import annotations

import torch
from torch import nn

from ssl_emp.config import Config, config_from_dict
from ssl_emp.data import ImageData, build_datasets
from ssl_emp.engine.checkpoint import load_latest_checkpoint
from ssl_emp.engine.device import resolve_device
from ssl_emp.engine.run_dir import RunDirectory
from ssl_emp.errors import UserInputError
from ssl_emp.eval.evaluators import EvaluationResult, Evaluator
from ssl_emp.io import WriteError, check_writable, write_json
from ssl_emp.methods import build_method

EVALUATION_OVERRIDES = ("eval.", "train.device=", "train.threads=")


def load_trained_backbone(
    run: RunDirectory, config: Config, train: ImageData, device: torch.device
) -> nn.Module:
    """The backbone of the newest checkpoint of ``run``."""
    found = load_latest_checkpoint(run.checkpoint_dir)
    if found is None:
        raise UserInputError(
            f"run directory {run.path} has no checkpoint yet; pretrain it first "
            f"(ssl-emp pretrain ... run.dir={run.path})"
        )
    model = build_method(config, train)
    model.load_state_dict(found[1]["model"])
    return model.backbone.to(device)


def load_run_for_evaluation(
    run_dir: str, overrides: list[str] | None = None
) -> tuple[RunDirectory, Config, ImageData, ImageData, nn.Module]:
    """The run, its config (with ``eval.*`` overrides), train and test data, and backbone.

    Raises:
        UserInputError: not a run directory, no checkpoint, or an override outside
            ``eval.*`` / ``train.device`` / ``train.threads``.
    """
    run = RunDirectory(run_dir)
    config = run.load_config()
    overrides = list(overrides or [])
    for text in overrides:
        if not text.startswith(EVALUATION_OVERRIDES):
            raise UserInputError(
                f"evaluation takes only eval.* and train.device/threads overrides, got '{text}'"
            )
    if overrides:
        config = config_from_dict(config.to_dict(), overrides)
    device = resolve_device(config.train.device)
    if config.train.threads is not None:
        torch.set_num_threads(config.train.threads)
    train, test = build_datasets(
        config.data, seed=config.seed, image_size=config.augment.image_size
    )
    backbone = load_trained_backbone(run, config, train, device)
    return run, config, train, test, backbone


def evaluate_run(
    evaluator: Evaluator, run_dir: str, overrides: list[str] | None = None
) -> EvaluationResult:
    """Evaluate the newest checkpoint of a run; writes ``RUN_DIR/<evaluator.name>.json``.

    Args:
        evaluator: the evaluation to run.
        run_dir: the pretraining run directory.
        overrides: ``eval.*`` (or ``train.device``/``train.threads``) overrides.
    """
    run, config, train, test, backbone = load_run_for_evaluation(run_dir, overrides)
    destination = run.result_path(evaluator.name)
    check_writable(destination)  # before the evaluation, not after it
    result = evaluator.evaluate(backbone, train, test, config)
    try:
        write_json(destination, result.to_dict())
    except WriteError as problem:  # the evaluation is not lost: its result is in the message
        hint = f"; the result was top1 {100 * result.top1:.2f} %"
        raise WriteError(destination, problem.error, hint=hint) from None
    return result
