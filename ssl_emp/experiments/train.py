"""``ssl-emp pretrain`` and ``ssl-emp train-supervised``: one ``train(config)`` for both."""

from __future__ import annotations

from ssl_emp.config import Config
from ssl_emp.data import ImageData
from ssl_emp.engine.builder import build_parts
from ssl_emp.engine.callbacks import (
    Callback,
    Checkpointer,
    junk_diagnostics,
    label_noise_diagnostics,
    standard_callbacks,
)
from ssl_emp.engine.loggers import loggers_for
from ssl_emp.engine.monitors import monitors_for
from ssl_emp.engine.run_dir import RunDirectory
from ssl_emp.engine.trainer import Trainer
from ssl_emp.errors import UserInputError
from ssl_emp.methods import method_class


def build_trainer(
    config: Config, train_data: ImageData | None = None, test_data: ImageData | None = None
) -> Trainer:
    """A trainer for ``config`` with the standard callbacks and the monitors it asks for,
    restored from the newest checkpoint when ``run.resume`` is set.

    Args:
        config: the resolved configuration.
        train_data: training data (loaded from ``config.data`` when omitted).
        test_data: test data for the monitors (loaded when one needs it).
    """
    parts = build_parts(config, train_data=train_data, test_data=test_data)
    diagnostics: list[Callback] = []
    if parts.label_noise is not None:
        noise = parts.label_noise
        diagnostics.append(
            label_noise_diagnostics(noise.flipped, noise.clean_labels, noise.noisy_labels)
        )
    if parts.junk is not None:
        diagnostics.append(junk_diagnostics(parts.junk))
    callbacks = standard_callbacks(tuple(diagnostics), monitors_for(parts), loggers_for(config))
    trainer = Trainer(parts, callbacks)
    if config.run.resume:
        for callback in trainer.callbacks:
            if isinstance(callback, Checkpointer):
                callback.restore(trainer)
    return trainer


def train(config: Config) -> RunDirectory:
    """Run (or resume) a training run of any method; returns its run directory."""
    trainer = build_trainer(config)
    trainer.fit()
    return trainer.run


def pretrain(config: Config) -> RunDirectory:
    """Run (or resume) a self-supervised pretraining run; returns its run directory."""
    if method_class(config.method.name).supervised:
        raise UserInputError(
            f"method.name={config.method.name} is trained with `ssl-emp train-supervised`, "
            "not pretrain"
        )
    return train(config)


def train_supervised(config: Config) -> RunDirectory:
    """Run (or resume) a supervised classification run; writes ``eval.json``."""
    if not method_class(config.method.name).supervised:
        raise UserInputError(
            f"train-supervised needs method.name=supervised (the config says "
            f"'{config.method.name}'); use a supervised config such as "
            "configs/supervised_fashion_mnist.yaml"
        )
    return train(config)
