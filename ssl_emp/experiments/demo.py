"""``ssl-emp demo``: pretrain SimCLR on Fashion-MNIST, then compare its linear probe against
the same probe on a randomly initialised backbone of the same architecture."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ssl_emp.config import Config, load_config
from ssl_emp.data import build_datasets
from ssl_emp.engine.seeding import seed_everything
from ssl_emp.eval import LinearProbe
from ssl_emp.eval.loading import load_trained_backbone
from ssl_emp.experiments.train import build_trainer
from ssl_emp.io import write_json
from ssl_emp.methods import build_method

DEFAULT_DEMO_CONFIG = "configs/simclr_fashion_mnist.yaml"
DEMO_RUN_DIR = "runs/demo"


def default_config_path() -> Path:
    """The demo config, looked up in the working directory and then next to the package."""
    local = Path(DEFAULT_DEMO_CONFIG)
    if local.is_file():
        return local
    return Path(__file__).resolve().parent.parent / DEFAULT_DEMO_CONFIG


def load_demo_config(path: str | None, overrides: list[str]) -> Config:
    """The demo's config: the Fashion-MNIST default, into ``runs/demo``, overwritten each time."""
    base = [f"run.dir={DEMO_RUN_DIR}", "run.overwrite=true"]
    return load_config(path or default_config_path(), [*base, *overrides])


def run_demo(config: Config) -> dict[str, float]:
    """Pretrain, probe the pretrained and a random backbone, print and return the accuracies."""
    started = time.perf_counter()
    train, test = build_datasets(
        config.data, seed=config.seed, image_size=config.augment.image_size
    )
    trainer = build_trainer(config, train_data=train, test_data=test)
    trainer.fit()
    pretrain_s = time.perf_counter() - started
    device = trainer.device
    probe = LinearProbe()

    print("linear probe on the pretrained backbone ...", flush=True)
    backbone = load_trained_backbone(trainer.run, config, train, device)
    pretrained = probe.evaluate(backbone, train, test, config)

    print("linear probe on a randomly initialised backbone ...", flush=True)
    seed_everything(config.seed)
    random_backbone = build_method(config, train).backbone.to(device)
    baseline = probe.evaluate(random_backbone, train, test, config)

    margin = pretrained.top1 - baseline.top1
    result = {
        "pretrained_top1": pretrained.top1,
        "random_init_top1": baseline.top1,
        "margin": margin,
        "pretrain_wall_time_s": pretrain_s,
        "total_wall_time_s": time.perf_counter() - started,
    }
    write_json(trainer.run.result_path(probe.name), pretrained.to_dict())
    write_json(trainer.run.demo_path, result)
    print()
    print(
        f"SimCLR demo: {config.model.backbone} (width {config.model.width}), "
        f"{len(train)} Fashion-MNIST images, {config.train.epochs} epochs, "
        f"{torch.get_num_threads()} CPU threads"
    )
    print(f"  linear probe, pretrained backbone : {100 * pretrained.top1:6.2f} %")
    print(f"  linear probe, random-init backbone: {100 * baseline.top1:6.2f} %")
    print(f"  margin                            : {100 * margin:+6.2f} points")
    print(
        f"  wall time: pretraining {pretrain_s / 60:.1f} min, "
        f"total {result['total_wall_time_s'] / 60:.1f} min; run directory {trainer.run.path}"
    )
    return result
