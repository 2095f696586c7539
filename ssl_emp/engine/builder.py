"""From a config to the parts of a run: device, processes, data, method, optimizer, pruner,
memory estimator and run directory, with every check on their combination up front."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ssl_emp.collectives import broadcast_error
from ssl_emp.config import Config
from ssl_emp.data import ImageData, build_datasets
from ssl_emp.data.contamination import add_junk
from ssl_emp.data.label_noise import flip_labels
from ssl_emp.engine.device import resolve_device
from ssl_emp.engine.distributed import DistributedContext, init_distributed
from ssl_emp.engine.optim import build_optimizer
from ssl_emp.engine.platform import describe_platform
from ssl_emp.engine.run_dir import RunDirectory
from ssl_emp.engine.seeding import seed_everything
from ssl_emp.errors import UserInputError
from ssl_emp.methods import Method, build_method, method_class
from ssl_emp.models.backbones import channels_last_is_safe
from ssl_emp.pruning import MemoryEstimator, Pruner
from ssl_emp.pruning.estimators import EstimatorContext, build_estimator
from ssl_emp.pruning.options import score_kind
from ssl_emp.pruning.scores import SCORES


@dataclass(frozen=True)
class LabelNoise:
    """Which training labels a run flipped (``data.label_noise``)."""

    flipped: np.ndarray
    clean_labels: torch.Tensor
    noisy_labels: torch.Tensor


@dataclass
class TrainingParts:
    """Everything a :class:`~ssl_emp.engine.trainer.Trainer` runs.

    Attributes:
        config: the resolved configuration.
        context: this process's place in a ``torchrun`` job.
        device: the training device.
        run: the run directory (prepared by rank 0).
        data: training data on ``device`` (labels flipped where ``data.label_noise`` asks).
        test_data: test data (CPU), when a monitor needs it.
        label_noise: the flipped labels, or None.
        junk: sorted indices of the images replaced by junk (``data.junk_fraction``), or None.
        model: the method (unwrapped).
        forward_model: ``model``, wrapped in DistributedDataParallel under torchrun.
        optimizer: over the trainable parameters.
        pruner: the score table and selection policy.
        estimator: the memory term.
    """

    config: Config
    context: DistributedContext
    device: torch.device
    run: RunDirectory
    data: ImageData
    test_data: ImageData | None
    label_noise: LabelNoise | None
    junk: np.ndarray | None
    model: Method
    forward_model: nn.Module
    optimizer: torch.optim.Optimizer
    pruner: Pruner
    estimator: MemoryEstimator


def check_method_options(config: Config) -> None:
    """Reject settings that do not apply to the configured method."""
    supervised = method_class(config.method.name).supervised
    kind = score_kind(config.pruning)
    if SCORES[kind].needs_bank and (supervised or config.memory.estimator != "bank"):
        raise UserInputError(
            f"pruning.score={kind} ranks each sample's feature in the memory bank, so it needs "
            "an SSL run with memory.estimator=bank; add memory.estimator=bank"
            + (" (and use ssl-emp pretrain)" if supervised else "")
        )
    if supervised and config.memory.estimator == "bank":
        raise UserInputError(
            "memory.estimator=bank is an SSL estimator; supervised runs use the prediction "
            "entropy, so drop memory.estimator=bank"
        )
    if not supervised and config.data.label_noise > 0:
        raise UserInputError(
            "data.label_noise only applies to supervised training (ssl-emp train-supervised); "
            "SSL pretraining does not use labels"
        )


def needs_test_data(config: Config) -> bool:
    """Whether a per-epoch monitor evaluates on the test split."""
    return method_class(config.method.name).supervised or config.eval.knn_every > 0


def check_batch_size(config: Config, num_samples: int, pruner: Pruner, world_size: int) -> None:
    """A batch must fit the data, the kept set and at least one sample per process."""
    batch_size = config.train.batch_size
    if batch_size > num_samples:
        raise UserInputError(
            f"train.batch_size={batch_size} exceeds the {num_samples} "
            f"training samples; use train.batch_size<={num_samples}"
        )
    if pruner.policy.keeps_at_least_k and pruner.keep < batch_size:
        raise UserInputError(
            f"train.batch_size={batch_size} exceeds the {pruner.keep} "
            f"samples kept per epoch at pruning.rate={config.pruning.rate}; use "
            f"train.batch_size<={pruner.keep} or a lower rate"
        )
    if batch_size < world_size:
        raise UserInputError(
            f"train.batch_size={batch_size} is smaller than the "
            f"{world_size} processes; use at least one sample per process"
        )
    splits = getattr(config.method, "bn_splits", 1)  # methods with shuffled BN groups (MoCo)
    smallest_shard = (batch_size + 1) // 2 // world_size  # the last batch may be ~half full
    if config.train.sync_bn and smallest_shard < splits > 1:
        raise UserInputError(
            f"train.sync_bn with method.bn_splits={splits} needs at least {splits} samples per "
            f"process in every batch, but a shard can hold {smallest_shard}; raise "
            "train.batch_size or lower method.bn_splits"
        )


def prepare_run_directory(config: Config, context: DistributedContext) -> RunDirectory:
    """Rank 0 creates (or checks) the run directory; every rank fails alike if it cannot."""
    error, run = None, RunDirectory(config.run.dir)
    refusal: UserInputError | None = None
    if context.is_main:
        try:
            run = RunDirectory.prepare(config)
        except UserInputError as problem:
            error, refusal = str(problem), problem
    error = broadcast_error(error)
    if refusal is not None:
        raise refusal  # its own type: a shared sweep skips a busy run directory
    if error is not None:
        raise UserInputError(error)
    return run


def add_label_noise(config: Config, data: ImageData) -> tuple[ImageData, LabelNoise | None]:
    """Flip the seeded fraction ``data.label_noise`` of the training labels."""
    if config.data.label_noise <= 0:
        return data, None
    noisy_labels, flipped = flip_labels(
        data.labels, config.data.label_noise, data.num_classes, seed=config.seed
    )
    noise = LabelNoise(flipped=flipped, clean_labels=data.labels, noisy_labels=noisy_labels)
    return replace(data, labels=noisy_labels), noise


def contaminate(
    config: Config, data: ImageData
) -> tuple[ImageData, LabelNoise | None, np.ndarray | None]:
    """The training data as the run trains it: labels flipped (``data.label_noise``) and
    images replaced by junk (``data.junk_fraction``), both seeded; with what was changed."""
    data, label_noise = add_label_noise(config, data)
    junk = None
    if config.data.junk_fraction > 0:
        data, junk = add_junk(data, config.data.junk_fraction, seed=config.seed)
    return data, label_noise, junk


def wrap_for_ddp(
    config: Config, model: Method, context: DistributedContext, device: torch.device
) -> tuple[Method, nn.Module]:
    """(the model, what the step calls): DistributedDataParallel under torchrun; with
    ``train.compile`` the backbone's network is compiled first (in place, so state dicts,
    checkpoints and exports keep their keys)."""
    if config.train.compile:
        body = model.backbone.body
        # inductor may put convolutions in channels-last on its own; where that layout hits
        # torch's CPU backward bug (see channels_last_is_safe) it must keep the given one
        safe = channels_last_is_safe(body)
        body.compile(options=None if safe else {"layout_optimization": False})
    if not context.enabled:
        return model, model
    if config.train.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [device.index] if device.type == "cuda" else None
    return model, DistributedDataParallel(model, device_ids=device_ids)


def use_deterministic_algorithms() -> None:
    """Deterministic cuDNN and torch algorithms for reproducible GPU runs (``train.deterministic``).

    cuBLAS needs ``CUBLAS_WORKSPACE_CONFIG`` before its first use; it is set here when the
    user has not set it.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True)


def build_parts(
    config: Config, train_data: ImageData | None = None, test_data: ImageData | None = None
) -> TrainingParts:
    """Check ``config``, load what is not given, and build every part of the run.

    Args:
        config: the resolved configuration.
        train_data: training data (loaded from ``config.data`` when omitted).
        test_data: test data for the monitors (loaded when one needs it).
    """
    check_method_options(config)
    device_type = resolve_device(config.train.device).type
    context = init_distributed(device_type, timeout_s=config.train.dist_timeout_s)
    device = resolve_device(config.train.device, local_rank=context.local_rank)
    if config.train.sync_bn and device.type != "cuda":
        raise UserInputError("train.sync_bn=true needs CUDA; drop it for CPU runs")
    if config.train.threads is not None:
        torch.set_num_threads(config.train.threads)
    if config.train.deterministic:
        use_deterministic_algorithms()
    if train_data is None or (needs_test_data(config) and test_data is None):
        train_data, test_data = build_datasets(
            config.data, seed=config.seed, image_size=config.augment.image_size
        )
    pruner = Pruner(
        config.pruning,
        num_samples=len(train_data),
        epochs=config.train.epochs,
        seed=config.seed,
        device=device,
    )
    check_batch_size(config, len(train_data), pruner, context.world_size)
    run = prepare_run_directory(config, context)
    if context.is_main:
        run.record_platform(describe_platform(device))
    train_data, label_noise, junk = contaminate(config, train_data)
    seed_everything(config.seed + context.rank)  # distinct views per rank
    data = train_data.to(device)
    model, forward_model = wrap_for_ddp(
        config, build_method(config, train_data).to(device), context, device
    )
    return TrainingParts(
        config=config,
        context=context,
        device=device,
        run=run,
        data=data,
        test_data=test_data,
        label_noise=label_noise,
        junk=junk,
        model=model,
        forward_model=forward_model,
        optimizer=build_optimizer(model, config.train),
        pruner=pruner,
        estimator=estimator_for(config, model, data, device),
    )


def estimator_for(
    config: Config, model: Method, data: ImageData, device: torch.device
) -> MemoryEstimator:
    """The memory estimator of the run: the method's own (supervised methods score with the
    prediction entropy), else ``memory.estimator``, over the features of ``memory.layer``."""
    name = model.memory_estimator or config.memory.estimator
    if name != "prediction" and not model.two_views:
        raise ValueError(f"{type(model).__name__}: the SSL memory terms need two views")
    context = EstimatorContext(
        memory=config.memory,
        pruning=config.pruning,
        seed=config.seed,
        num_samples=len(data),
        feature_dim=model.feature_dim(config.memory.layer),
        labels=data.labels,
        device=device,
        batch_size=config.train.batch_size,
    )
    return build_estimator(name, context)
