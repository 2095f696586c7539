"""Typed run configuration: YAML files plus dotted ``key=value`` overrides.

Every key is a dataclass field whose metadata says what it means (``help``) and what values
are allowed (``choices`` or a numeric range). Loading checks every key, type and range and
raises :class:`~ssl_emp.errors.UserInputError` with a one-line message naming the key and
what is allowed, so the CLI can exit with code 2 instead of a traceback.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ssl_emp.errors import UserInputError


def _option(default: Any, help: str, **rules: Any) -> Any:  # noqa: A002 - "help" reads best
    """A config field with its help text and validation rules (choices, ge, gt, le, lt)."""
    return field(default=default, metadata={"help": help, **rules})


@dataclass
class DataConfig:
    """Where the training and test images come from."""

    source: str = _option(
        "fashion_mnist",
        "dataset to train on",
        choices=("fashion_mnist", "cifar10", "cifar100", "image_folder", "synthetic"),
    )
    root: str | None = _option(
        None,
        "dataset directory (fashion_mnist: /usr/share/datasets/fashion-mnist; image_folder: a "
        "folder with train/ and test/ (or val/) class sub-folders)",
    )
    subset: int | None = _option(
        None, "train on a seeded, class-balanced subset of this many samples", ge=1
    )
    test_subset: int | None = _option(
        None, "evaluate on a seeded, class-balanced subset of the test split", ge=1
    )
    download: bool = _option(False, "let torchvision download CIFAR if it is missing")
    label_noise: float = _option(
        0.0,
        "train-supervised: fraction of training labels replaced by a different class (seeded)",
        ge=0.0,
        lt=1.0,
    )
    synthetic_size: int = _option(512, "number of synthetic training samples", ge=2)
    synthetic_classes: int = _option(4, "number of synthetic classes", ge=2)


@dataclass
class ModelConfig:
    """Backbone and projection head."""

    backbone: str = _option(
        "resnet_small", "encoder", choices=("resnet18", "resnet50", "resnet_small")
    )
    cifar_stem: bool = _option(
        True, "3x3 stride-1 first convolution and no max-pool (for 28-64 px images)"
    )
    width: int = _option(16, "base channel width of resnet_small", ge=4)
    proj_hidden_dim: int | None = _option(
        None, "hidden width of the projection head (default: the backbone's feature size)", ge=1
    )
    proj_dim: int = _option(128, "output dimension of the projection head", ge=1)
    channels_last: bool = _option(
        True, "channels-last memory format for the backbone (faster convolutions)"
    )


@dataclass
class MethodConfig:
    """Self-supervised objective."""

    name: str = _option(
        "simclr",
        "training method (supervised runs through `ssl-emp train-supervised`)",
        choices=("simclr", "moco", "supervised"),
    )
    temperature: float = _option(0.2, "softmax temperature tau of the contrastive loss", gt=0.0)
    queue_size: int = _option(4096, "moco: number of keys in the queue of negatives", ge=1)
    momentum: float = _option(
        0.99,
        "moco: start value of the key encoder's momentum (cosine schedule to 1)",
        ge=0.0,
        le=1.0,
    )
    symmetric: bool = _option(False, "moco: average the loss over both view orders")
    gather_negatives: bool = _option(
        True, "simclr under torchrun: use every rank's views as negatives (global batch)"
    )
    bn_splits: int = _option(
        4,
        "moco: batch-norm groups; queries and shuffled keys are encoded in this many chunks "
        "so their BN statistics differ (single-device shuffle-BN)",
        ge=1,
    )


@dataclass
class AugmentConfig:
    """Batched kornia augmentation on the data's device."""

    preset: str = _option(
        "simclr", "augmentation preset", choices=("simclr", "mocov2", "supervised")
    )
    image_size: int | None = _option(
        None, "side length of the augmented views (default: the dataset's own)", ge=8
    )
    crop_min_scale: float = _option(
        0.2, "smallest area fraction kept by the random resized crop", gt=0.0, le=1.0
    )
    jitter_strength: float = _option(0.5, "colour-jitter strength s (SimCLR's 0.8*s, 0.2*s)", ge=0)
    blur: bool | None = _option(
        None, "Gaussian blur (default: on for images of 64 px and more, off below)"
    )


@dataclass
class TrainConfig:
    """Optimisation and training-loop settings."""

    epochs: int = _option(20, "passes over the (kept) training data", ge=1)
    batch_size: int = _option(256, "samples per step (each gives two views)", ge=2)
    optimizer: str = _option("sgd", "optimizer", choices=("sgd", "lars", "adamw"))
    lr: float = _option(
        0.3, "peak learning rate, scaled by batch_size/256 (SimCLR's linear rule)", gt=0.0
    )
    momentum: float = _option(0.9, "momentum of sgd and lars", ge=0.0, lt=1.0)
    weight_decay: float = _option(5e-4, "weight decay", ge=0.0)
    warmup_epochs: float = _option(
        1.0, "linear learning-rate warm-up, in epochs of training progress", ge=0.0
    )
    device: str = _option("auto", "training device", choices=("auto", "cpu", "cuda"))
    amp: bool = _option(True, "bfloat16 mixed precision on CUDA (ignored on CPU)")
    threads: int | None = _option(None, "CPU threads for torch (default: torch's choice)", ge=1)
    progress: bool = _option(True, "show a tqdm progress bar")
    checkpoint_every: int = _option(
        0,
        "also checkpoint every n optimizer steps inside an epoch (0 = at epoch ends only)",
        ge=0,
    )
    sync_bn: bool = _option(
        False, "multi-GPU (torchrun): convert batch norms to SyncBatchNorm (CUDA only)"
    )
    dist_timeout_s: float = _option(
        300.0, "multi-process: seconds a collective may wait for a peer before failing", gt=0.0
    )
    on_nonfinite: str = _option(
        "stop",
        "a non-finite loss: stop the run (the last good checkpoint stays) or skip the step",
        choices=("stop", "skip"),
    )


@dataclass
class PruningConfig:
    """Dynamic data pruning: which samples each epoch trains on (DESIGN 3.3)."""

    policy: str = _option(
        "full",
        "selection policy (emp = eps_greedy over the EMP score)",
        choices=("full", "random", "topk", "eps_greedy", "ucb", "infobatch", "emp"),
    )
    rate: float = _option(
        0.5,
        "pruning rate s: hard-rate policies keep K = ceil((1 - s) N) samples per epoch; "
        "infobatch prunes below-mean samples with this probability",
        ge=0.0,
        lt=1.0,
    )
    score: str | None = _option(
        None,
        "what is ranked: loss, or emp = loss combined with beta * memory (default: emp for "
        "policy emp, loss otherwise)",
        choices=("loss", "emp"),
    )
    combine: str = _option(
        "zscore",
        "how the EMP score combines loss and memory: zscore = z(loss) + beta z(memory); "
        "raw = loss + beta memory",
        choices=("zscore", "raw"),
    )
    beta: float = _option(1.0, "weight of the memory term (may be negative)")
    eps: float = _option(
        0.1,
        "eps_greedy/emp: fraction of the kept set drawn uniformly from the rest",
        ge=0.0,
        le=1.0,
    )
    ucb_c: float = _option(1.0, "ucb: weight c of the score's standard deviation", ge=0.0)
    ema: float = _option(
        0.8, "ucb: EMA factor of the per-sample score mean and variance", ge=0.0, lt=1.0
    )
    delta: float = _option(
        0.875,
        "infobatch: fraction of the epochs that prune; the rest train on all data",
        gt=0.0,
        le=1.0,
    )
    warmup_epochs: int = _option(1, "epochs on the full data before pruning starts", ge=0)
    anneal: float = _option(
        0.0, "final fraction of the epochs trained on the full data", ge=0.0, lt=1.0
    )


@dataclass
class MemoryConfig:
    """The memory term of the EMP score (DESIGN 3.2)."""

    estimator: str = _option(
        "batch",
        "batch = entropy over the in-batch InfoNCE candidates; bank = entropy over faiss "
        "nearest neighbours in a bank of every sample's latest feature",
        choices=("batch", "bank"),
    )
    layer: str = _option(
        "backbone", "features the memory term is computed on", choices=("backbone", "projection")
    )
    center: bool = _option(
        True, "subtract the mean feature before the cosine (without it the term is ~constant)"
    )
    tau: float = _option(0.1, "temperature tau_m of the memory softmax", gt=0.0)
    k: int = _option(32, "bank: number of nearest neighbours", ge=1)
    refresh_every: int = _option(
        0, "bank: re-embed every sample (no grad) every n epochs; 0 = never", ge=0
    )
    normalize: str = _option(
        "log",
        "log = divide by log(candidates) into [0, 1]; none = raw nats",
        choices=("log", "none"),
    )


@dataclass
class EvalConfig:
    """Evaluation on frozen features: linear probe and weighted kNN."""

    probe_epochs: int = _option(100, "epochs of the linear classifier on frozen features", ge=1)
    probe_lr: float = _option(1e-2, "learning rate of the probe (Adam)", gt=0.0)
    probe_batch_size: int = _option(256, "mini-batch size of the probe", ge=1)
    probe_weight_decay: float = _option(1e-5, "weight decay of the probe", ge=0.0)
    knn_k: int = _option(200, "kNN: number of neighbours", ge=1)
    knn_t: float = _option(0.1, "kNN: temperature of the similarity weights exp(sim / t)", gt=0.0)
    knn_every: int = _option(
        0, "pretraining: kNN monitor on the test split every n epochs (0 = off)", ge=0
    )


@dataclass
class RunConfig:
    """Run directory handling."""

    dir: str = _option("runs/simclr_fashion_mnist", "run directory (created)")
    resume: bool = _option(False, "continue from the newest checkpoint in run.dir")
    overwrite: bool = _option(False, "delete an existing run.dir and start over")


@dataclass
class Config:
    """A whole run: one section per concern, plus the seed."""

    seed: int = _option(0, "seed of every random number generator", ge=0)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    pruning: PruningConfig = field(default_factory=PruningConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        """A plain nested dict (for ``config.yaml`` and checkpoints)."""
        return dataclasses.asdict(self)


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _allowed_types(tp: Any) -> tuple[Any, ...]:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return typing.get_args(tp)
    return (tp,)


def _type_name(tp: Any) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    parts = [names.get(t, "null") if t is not type(None) else "null" for t in _allowed_types(tp)]
    return " or ".join(parts)


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Return ``value`` as type ``tp`` or raise a one-line error naming ``key``."""
    allowed = _allowed_types(tp)
    if value is None:
        if type(None) in allowed:
            return None
    elif isinstance(value, bool):
        if bool in allowed:
            return value
    elif isinstance(value, int) and int in allowed:
        return value
    elif isinstance(value, int | float) and float in allowed:
        return float(value)
    elif isinstance(value, str) and str in allowed:
        return value
    raise UserInputError(f"config key '{key}' must be {_type_name(tp)}, got {value!r}")


def _check_rules(key: str, value: Any, meta: typing.Mapping[str, Any]) -> None:
    if value is None:
        return
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise UserInputError(
            f"config key '{key}' must be one of {', '.join(choices)}; got {value!r}"
        )
    if isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise UserInputError(f"config key '{key}' must be finite, got {value!r}")
        bounds = [
            ("ge", lambda v, b: v >= b, ">="),
            ("gt", lambda v, b: v > b, ">"),
            ("le", lambda v, b: v <= b, "<="),
            ("lt", lambda v, b: v < b, "<"),
        ]
        wanted = [f"{sign} {meta[name]}" for name, _, sign in bounds if name in meta]
        for name, ok, _ in bounds:
            if name in meta and not ok(value, meta[name]):
                raise UserInputError(
                    f"config key '{key}' must be {' and '.join(wanted)}; got {value!r}"
                )


def _unknown_key(key: str, allowed: list[str]) -> UserInputError:
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], allowed, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return UserInputError(
        f"unknown config key '{key}'{hint}; allowed here: {', '.join(sorted(allowed))}"
    )


def _apply(target: Any, values: dict[str, Any], prefix: str) -> None:
    """Set ``values`` on the dataclass ``target``, checking every key, type and rule."""
    hints = typing.get_type_hints(type(target))
    known = {f.name: f for f in dataclasses.fields(target)}
    for name, value in values.items():
        key = f"{prefix}{name}"
        if name not in known:
            raise _unknown_key(key, list(known))
        tp = hints[name]
        if _is_section(tp):
            if not isinstance(value, dict):
                raise UserInputError(
                    f"config key '{key}' is a section; give it as a mapping of keys, "
                    f"e.g. {key}.{next(iter(f.name for f in dataclasses.fields(tp)))}=..."
                )
            _apply(getattr(target, name), value, prefix=f"{key}.")
            continue
        coerced = _coerce(key, value, tp)
        _check_rules(key, coerced, known[name].metadata)
        setattr(target, name, coerced)


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise UserInputError(
            f"override '{text}' is not of the form key=value (e.g. train.epochs=5)"
        )
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise UserInputError(f"override '{text}' has no key (e.g. train.epochs=5)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping, turning every failure into a one-line ``UserInputError``."""
    if not path.is_file():
        raise UserInputError(f"config file {path} does not exist; pass an existing YAML file")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise UserInputError(
            f"YAML syntax error in {path}{where}: {problem}; fix the file"
        ) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise UserInputError(f"config file {path} must hold a mapping of sections, not a list")
    return loaded


def config_from_dict(values: dict[str, Any], overrides: typing.Sequence[str] = ()) -> Config:
    """Build a checked :class:`Config` from a nested dict and dotted ``key=value`` overrides."""
    config = Config()
    _apply(config, values, prefix="")
    for text in overrides:
        path, value = _parse_override(text)
        nested: Any = value
        for part in reversed(path):
            nested = {part: nested}
        _apply(config, nested, prefix="")
    return config


def load_config(path: str | Path | None, overrides: typing.Sequence[str] = ()) -> Config:
    """Load a YAML config (or the defaults when ``path`` is None) and apply overrides.

    Raises:
        UserInputError: on a missing file, YAML syntax error, unknown key, wrong type or a
            value out of range; the message names the key and what is allowed.
    """
    values = read_yaml(Path(path)) if path is not None else {}
    return config_from_dict(values, overrides)


def describe_options() -> str:
    """Every config key with its default and help text, for ``--help``."""
    lines: list[str] = []

    def walk(section: Any, prefix: str) -> None:
        hints = typing.get_type_hints(type(section))
        for f in dataclasses.fields(section):
            if _is_section(hints[f.name]):
                walk(getattr(section, f.name), prefix=f"{prefix}{f.name}.")
                continue
            meta = f.metadata
            allowed = f" {{{'|'.join(meta['choices'])}}}" if "choices" in meta else ""
            default = getattr(section, f.name)
            lines.append(f"  {prefix}{f.name}{allowed} (default {default!r}): {meta['help']}")

    walk(Config(), prefix="")
    return "\n".join(lines)
