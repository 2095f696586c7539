"""The run configuration's schema: one dataclass per section, one field per key.

Every key is a dataclass field whose metadata says what it means (``help``) and, for
numbers, the allowed range; keys with a fixed set of values are typed with a ``Literal``,
which is the one list of allowed names (the policy, estimator, source, optimiser and preset
registries check themselves against theirs).

The ``method`` section is the chosen method's own: :class:`MethodConfig` holds only
``method.name``, and each method module subclasses it with its keys (``MoCoConfig`` adds
``queue_size``, ``momentum``, ...); loading picks the subclass that ``method.name`` names
(:mod:`ssl_emp.config.loading`), so a key of another method is refused with its name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

BankSearch = Literal["exact", "ivf", "auto"]
BankLayoutChoice = Literal["views", "compact", "auto"]
WandbMode = Literal["offline", "online", "disabled"]
DataSource = Literal["fashion_mnist", "cifar10", "cifar100", "image_folder", "synthetic", "store"]
AugmentPreset = Literal["simclr", "mocov2", "byol", "supervised"]
OptimizerName = Literal["sgd", "lars", "adamw"]
DeviceName = Literal["auto", "cpu", "cuda"]
NonFiniteAction = Literal["stop", "skip"]
PolicyName = Literal[
    "full", "random", "topk", "infobatch", "ucb", "eps_greedy", "emp", "scan", "prototypical"
]
ScoreKind = Literal["loss", "emp", "prototypicality"]
Direction = Literal["hard", "easy"]
CombineRule = Literal["zscore", "raw"]
EstimatorName = Literal["batch", "bank"]
FeatureLayer = Literal["backbone", "projection"]
Normalization = Literal["log", "none"]


def option(default: Any, help: str, **rules: Any) -> Any:  # noqa: A002 - "help" reads best
    """A config field with its help text and validation rules (ge, gt, le, lt)."""
    return field(default=default, metadata={"help": help, **rules})


_option = option


@dataclass
class DataConfig:
    """Where the training and test images come from."""

    source: DataSource = _option("fashion_mnist", "dataset to train on")
    root: str | None = _option(
        None,
        "dataset directory (fashion_mnist: /usr/share/datasets/fashion-mnist; image_folder: a "
        "folder with train/ and test/ (or val/) class sub-folders; store: a directory written "
        "by ssl-emp prepare)",
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
    junk_fraction: float = _option(
        0.0,
        "fraction of training images replaced by junk (noise, noise blobs, near-duplicates of "
        "one image; seeded), to study what the pruner does with bad data",
        ge=0.0,
        lt=1.0,
    )
    workers: int = _option(
        2,
        "store: worker processes reading each epoch's kept images ahead (0 = in the training "
        "process)",
        ge=0,
    )
    synthetic_size: int = _option(512, "number of synthetic training samples", ge=2)
    synthetic_classes: int = _option(4, "number of synthetic classes", ge=2)


@dataclass
class ModelConfig:
    """Backbone and projection head."""

    backbone: str = _option(
        "resnet_small",
        "encoder: resnet_small or any torchvision classification model by name (resnet34, "
        "wide_resnet50_2, convnext_tiny, ...)",
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
        True,
        "channels-last memory format for the backbone (faster convolutions; not below "
        "resnet_small width 8, where torch's CPU backward of it crashes)",
    )


@dataclass
class MethodConfig:
    """The training objective: ``method.name`` and, in the method's own subclass (defined in
    its module under ``ssl_emp/methods/``), the keys of that method."""

    name: str = _option(
        "simclr",
        "training method: simclr, moco, byol, simsiam, nnclr (ssl-emp pretrain) or supervised "
        "(ssl-emp train-supervised)",
    )


def _default_method() -> MethodConfig:
    """The default method's own section (imported on first use: the methods are heavy)."""
    from ssl_emp.config.loading import method_config_class

    return method_config_class("simclr")()


@dataclass
class AugmentConfig:
    """Batched kornia augmentation on the data's device."""

    preset: AugmentPreset = _option("simclr", "augmentation preset")
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
    optimizer: OptimizerName = _option("sgd", "optimizer")
    lr: float = _option(
        0.3, "peak learning rate, scaled by batch_size/256 (SimCLR's linear rule)", gt=0.0
    )
    momentum: float = _option(0.9, "momentum of sgd and lars", ge=0.0, lt=1.0)
    weight_decay: float = _option(5e-4, "weight decay", ge=0.0)
    warmup_epochs: float = _option(
        1.0, "linear learning-rate warm-up, in epochs of training progress", ge=0.0
    )
    device: DeviceName = _option("auto", "training device")
    amp: bool = _option(True, "bfloat16 mixed precision on CUDA (ignored on CPU)")
    deterministic: bool = _option(
        False,
        "reproducible GPU runs: deterministic cuDNN and torch algorithms (slower; CPU runs are "
        "deterministic anyway)",
    )
    threads: int | None = _option(None, "CPU threads for torch (default: torch's choice)", ge=1)
    progress: bool = _option(
        True,
        "show progress within epochs: a bar when stderr is a terminal, else a plain line every "
        "train.progress_interval_s seconds",
    )
    progress_interval_s: float = _option(
        60.0,
        "seconds between progress lines when the output is not a terminal (0: epoch lines only)",
        ge=0.0,
    )
    checkpoint_every: int = _option(
        0,
        "also checkpoint every n optimizer steps inside an epoch (0 = at epoch ends only)",
        ge=0,
    )
    compile: bool = _option(
        False,
        "torch.compile the backbone (in place; the same numbers within float tolerance); off "
        "by default: on the measured CPU it was no faster (docs/benchmarks.md)",
    )
    stop_check_every: int = _option(
        10,
        "multi-process (torchrun): ask every rank for a stop signal every n steps (one "
        "all-reduce); a SIGTERM is acted on within n steps, and always at an epoch's end",
        ge=1,
    )
    sync_bn: bool = _option(
        False, "multi-GPU (torchrun): convert batch norms to SyncBatchNorm (CUDA only)"
    )
    dist_timeout_s: float = _option(
        300.0, "multi-process: seconds a collective may wait for a peer before failing", gt=0.0
    )
    on_nonfinite: NonFiniteAction = _option(
        "stop", "a non-finite loss: stop the run (the last good checkpoint stays) or skip the step"
    )


@dataclass
class PruningConfig:
    """Dynamic data pruning: which samples each epoch trains on (docs/design.md, 2.5)."""

    policy: PolicyName = _option("full", "selection policy (emp = eps_greedy over the EMP score)")
    rate: float = _option(
        0.5,
        "pruning rate s: hard-rate policies keep K = ceil((1 - s) N) samples per epoch; "
        "infobatch prunes below-mean samples with this probability",
        ge=0.0,
        lt=1.0,
    )
    score: ScoreKind | None = _option(
        None,
        "what is ranked: loss; emp = loss combined with beta * memory; prototypicality = "
        "distance of the sample's bank feature to its nearest k-means centroid (needs "
        "memory.estimator=bank) (default: emp for policy emp, prototypicality for "
        "prototypical, loss otherwise)",
    )
    direction: Direction | None = _option(
        None,
        "which end of the ranking a ranking policy (topk, eps_greedy, emp, prototypical) "
        "keeps: hard = the highest scores, easy = the lowest (easy, prototypical samples "
        "first) (default: easy for prototypical, hard otherwise)",
    )
    combine: CombineRule = _option(
        "zscore",
        "how the EMP score combines loss and memory: zscore = z(loss) + beta z(memory); "
        "raw = loss + beta memory",
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
    scan_cycle: int = _option(
        3,
        "scan: pruned epochs after each full-data scoring epoch, over which the pruned share "
        "of the candidates rises on a cosine (SCAN's T_cos)",
        ge=1,
    )
    scan_ill_share: float = _option(
        0.5,
        "scan: share of the candidate fraction (pruning.rate) taken from the highest losses "
        "(ill-matched); the rest comes from the lowest (redundant)",
        ge=0.0,
        le=1.0,
    )
    warmup_epochs: int = _option(1, "epochs on the full data before pruning starts", ge=0)
    anneal: float = _option(
        0.0, "final fraction of the epochs trained on the full data", ge=0.0, lt=1.0
    )


@dataclass
class MemoryConfig:
    """The memory term of the EMP score (docs/design.md, 2.2)."""

    estimator: EstimatorName = _option(
        "batch",
        "batch = entropy over the in-batch InfoNCE candidates; bank = entropy over faiss "
        "nearest neighbours in a bank of every sample's latest feature",
    )
    layer: FeatureLayer = _option("backbone", "features the memory term is computed on")
    center: bool = _option(
        True, "subtract the mean feature before the cosine (without it the term is ~constant)"
    )
    tau: float = _option(0.1, "temperature tau_m of the memory softmax", gt=0.0)
    k: int = _option(
        32, "bank: number of nearest neighbours (faiss-gpu searches at most 2048)", ge=1, le=2048
    )
    refresh_every: int = _option(
        0, "bank: re-embed every sample (no grad) every n epochs; 0 = never", ge=0
    )
    normalize: Normalization = _option(
        "log", "log = divide by log(candidates) into [0, 1]; none = raw nats"
    )
    search: BankSearch = _option(
        "auto",
        "bank: neighbour search; exact (faiss flat index, cost N^2), ivf (approximate: faiss "
        "inverted file, cost ~N x (cells + probe x cell size)), auto = exact below "
        "memory.exact_below samples, else ivf",
    )
    exact_below: int = _option(
        20000,
        "bank, search=auto and bank_layout=auto: exact search and the views layout below this "
        "many samples",
        ge=1,
    )
    bank_layout: BankLayoutChoice = _option(
        "auto",
        "bank: views (both views' features, 2 x N x D float16, centred in one frame per pass), "
        "compact (each sample's representative and positive cosine, N x D float16, centred "
        "by a running mean view when written: half the memory), auto = views below "
        "memory.exact_below samples, else compact",
    )
    ivf_cell_size: int = _option(256, "bank, ivf: samples per k-means cell on average", ge=1)
    ivf_probe: int = _option(
        8, "bank, ivf: cells scanned per sample (faiss nprobe; all cells = exact)", ge=1, le=2048
    )
    ivf_retrain_every: int = _option(
        1, "bank, ivf: epochs between retrainings of the k-means cells on the current bank", ge=1
    )


@dataclass
class EvalConfig:
    """Evaluation on frozen features: linear probe and weighted kNN."""

    probe_epochs: int = _option(100, "epochs of the linear classifier on frozen features", ge=1)
    probe_lr: float = _option(1e-2, "learning rate of the probe (Adam)", gt=0.0)
    probe_batch_size: int = _option(256, "mini-batch size of the probe", ge=1)
    probe_weight_decay: float = _option(1e-5, "weight decay of the probe", ge=0.0)
    knn_k: int = _option(
        200, "kNN: number of neighbours (faiss-gpu searches at most 2048)", ge=1, le=2048
    )
    knn_t: float = _option(0.1, "kNN: temperature of the similarity weights exp(sim / t)", gt=0.0)
    knn_every: int = _option(
        0, "pretraining: kNN monitor on the test split every n epochs (0 = off)", ge=0
    )


@dataclass
class LoggingConfig:
    """Loggers besides ``metrics.jsonl`` (which stays the source of truth); rank 0 only."""

    tensorboard: bool = _option(
        False, "write TensorBoard events under RUN/tensorboard/ (tensorboard --logdir runs/)"
    )
    wandb: bool = _option(
        False, "log to Weights & Biases (pip install 'ssl_emp[wandb]'); resumes keep the W&B run"
    )
    wandb_project: str = _option("ssl_emp", "W&B project")
    wandb_mode: WandbMode | None = _option(
        None, "W&B mode (default: $WANDB_MODE when set, else offline: nothing leaves the machine)"
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
    method: MethodConfig = field(default_factory=_default_method)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    pruning: PruningConfig = field(default_factory=PruningConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        """A plain nested dict (for ``config.yaml`` and checkpoints)."""
        return dataclasses.asdict(self)
