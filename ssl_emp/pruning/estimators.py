"""Memory estimators (docs/design.md, 2.2): one object per memory term, owning its state.

The trainer asks an estimator for the memory terms of each trained global batch (before the
pruner records it), tells it which batches were recorded, and gives it the end of each epoch
to re-score samples. Computing a memory term never trains: estimators read the features a
training step already produced (anything with the :class:`StepFeatures` shape, such as a
method's output), or call an :data:`Embedder`, a function that encodes samples by index
without side effects, which the loop that owns the model provides.

- :class:`PredictionEntropy`: supervised, ``H(softmax(logits)) / log(C)``.
- :class:`InBatchEntropy`: SSL, InfoNCE as a (2B-1)-way classifier over the global batch.
- :class:`FeatureBank`: SSL, the same entropy over faiss nearest neighbours in a bank of every
  sample's latest features; re-scores every sample at the end of an epoch.

They are built by name from :data:`ESTIMATORS` (:func:`build_estimator`). This module needs
torch, numpy and faiss only: a plain PyTorch loop can use it without the toolkit's models,
data or augmentations.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from ssl_emp.collectives import all_gather_rows, rank_and_world_size
from ssl_emp.data.batch import GlobalBatch, index_batches
from ssl_emp.neighbours import IvfSearch
from ssl_emp.pruning.memory import batch_memory, supervised_memory
from ssl_emp.pruning.memory_bank import BankMemory, choose_bank_layout
from ssl_emp.pruning.options import score_kind
from ssl_emp.pruning.scores import SCORES

if TYPE_CHECKING:
    from ssl_emp.config import MemoryConfig, PruningConfig

# Embedder(indices, layer) -> the features of fresh views of those samples, shape
# (V, len(indices), D): no gradient, no batch-norm statistics, queue or momentum touched
Embedder = Callable[[torch.Tensor, str], torch.Tensor]


class StepFeatures(Protocol):
    """What an estimator reads from a training step (a method's output has this shape)."""

    @property
    def logits(self) -> torch.Tensor | None:
        """Class logits of the local samples, (B_local, C), for supervised methods."""

    def layer(self, name: str) -> torch.Tensor | None:
        """Detached features of ``name`` (``backbone`` or ``projection``), (V, B_local, D)."""


class MemoryEstimator:
    """The interface of every memory term (the base class computes none)."""

    def batch_memory(self, batch: GlobalBatch, output: StepFeatures) -> torch.Tensor | None:
        """Memory terms of a training step's samples, from what the step computed (pure).

        Returns:
            (B,) for the gathered global batch, (B_local,) for this process's samples, or None
            when this estimator scores at epoch ends only.
        """
        return None

    def observe(self, batch: GlobalBatch, output: StepFeatures) -> None:
        """A step whose scores the pruner recorded (after :meth:`batch_memory`)."""

    def end_epoch(
        self, epoch: int, embed: Embedder | None = None
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """After ``epoch`` (0-based) was trained: new values of whole score-table columns
        (``memory``, ``prototype_distance``; none to keep the recorded ones) and statistics
        for the metrics. ``embed`` encodes samples afresh, for estimators that re-embed."""
        return {}, {}

    def state_dict(self) -> dict[str, Any] | None:
        """What a checkpoint must hold (None: stateless)."""
        return None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Restore :meth:`state_dict`."""


class PredictionEntropy(MemoryEstimator):
    """Supervised memory term: the entropy of the class prediction of each local sample.

    Args:
        normalize: ``log`` (divide by log C) or ``none`` (nats).
    """

    def __init__(self, normalize: str = "log") -> None:
        self.normalize = normalize

    def batch_memory(self, batch: GlobalBatch, output: StepFeatures) -> torch.Tensor | None:
        if output.logits is None:
            raise ValueError("PredictionEntropy needs a method that returns logits")
        return supervised_memory(output.logits, normalize=self.normalize)


def _gather_views(batch: GlobalBatch, features: torch.Tensor) -> torch.Tensor:
    """(V, B_local, D) features of every rank's shard -> (V, B, D) in gathered order.

    The all-gather concatenates along dim 0, so the views go second for it, (B_local, V, D),
    and back first afterwards.
    """
    return all_gather_rows(features.transpose(0, 1), batch.sizes).transpose(0, 1)


class InBatchEntropy(MemoryEstimator):
    """SSL batch estimator: each view classifies its positive among the global batch's other
    2B-1 views, on centred, L2-normalised features of ``layer``; computed on every rank from
    the gathered features, so the candidates are the same as in a single process.

    Args:
        layer: ``backbone`` (the paper's hidden layer) or ``projection``.
        tau: softmax temperature.
        center: subtract the batch mean first.
        normalize: ``log`` (divide by log(2B-1)) or ``none``.
    """

    def __init__(self, layer: str, tau: float, center: bool = True, normalize: str = "log") -> None:
        self.layer, self.tau, self.center, self.normalize = layer, tau, center, normalize

    def batch_memory(self, batch: GlobalBatch, output: StepFeatures) -> torch.Tensor | None:
        features = output.layer(self.layer)
        if features is None:
            return None
        return batch_memory(
            _gather_views(batch, features),
            tau=self.tau,
            center=self.center,
            normalize=self.normalize,
        )


class FeatureBank(MemoryEstimator):
    """SSL bank estimator: a float16 bank of every sample's latest features, written as samples
    are trained (and, every ``refresh_every`` epochs, for all samples through the loop's
    :data:`Embedder`), then neighbour entropies of every sample.

    Args:
        bank: the feature bank and its neighbour search.
        layer: which features go into the bank.
        refresh_every: re-embed every sample after every n-th epoch (0 = never).
        labels: labels for the kNN label-agreement diagnostic (never in scores).
        seed: seed of the refresh's views (a stream of its own, see :meth:`refresh`).
        prototypes: also give every sample's distance to its nearest k-means centroid (the
            prototypicality score).
        batch_size: samples embedded at a time by a refresh (split across ranks).
    """

    def __init__(
        self,
        bank: BankMemory,
        layer: str,
        refresh_every: int = 0,
        labels: torch.Tensor | None = None,
        seed: int = 0,
        prototypes: bool = False,
        batch_size: int = 256,
    ) -> None:
        self.bank, self.layer, self.refresh_every, self.labels = bank, layer, refresh_every, labels
        self.seed, self.prototypes, self.batch_size = seed, prototypes, batch_size

    def observe(self, batch: GlobalBatch, output: StepFeatures) -> None:
        features = output.layer(self.layer)
        if features is not None:
            self.bank.write(batch.gathered, _gather_views(batch, features))

    @torch.no_grad()
    def refresh(self, embed: Embedder, epoch: int = 0) -> None:
        """Re-embed every sample (fresh views) into the bank; ranks share the work.

        Training is left exactly as it was: ``embed`` changes no weight, queue, momentum or
        batch-norm statistic, and the views are drawn from a generator seeded by (seed,
        epoch, rank) inside ``torch.random.fork_rng``, so the training augmentation stream
        continues as if no refresh had happened.
        """
        rank, world_size = rank_and_world_size()
        device = self.bank.device
        cuda = [device.index or 0] if device.type == "cuda" else []
        stream = np.random.SeedSequence([self.seed, epoch, rank, 0xBA4C]).generate_state(1)[0]
        everyone = torch.arange(len(self.bank.written), device=device)
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(int(stream))
            for indices in index_batches(everyone, self.batch_size):
                batch = GlobalBatch.shard(indices, rank, world_size)
                features = embed(batch.local, self.layer)
                self.bank.write(batch.gathered, _gather_views(batch, features))

    def end_epoch(
        self, epoch: int, embed: Embedder | None = None
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        started = time.perf_counter()
        if self.refresh_every and (epoch + 1) % self.refresh_every == 0:
            if embed is None:
                raise ValueError("memory.refresh_every needs an embedding function")
            self.refresh(embed, epoch=epoch)
        columns, stats = self.bank.compute_columns(labels=self.labels, prototypes=self.prototypes)
        stats["bank_pass_s"] = time.perf_counter() - started
        return columns, stats

    def state_dict(self) -> dict[str, Any] | None:
        return self.bank.state_dict()

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if state is not None:
            self.bank.load_state_dict(state)


@dataclass(frozen=True)
class EstimatorContext:
    """What an estimator is built from: the config sections it reads and facts of the run.

    Attributes:
        memory: the ``memory`` section.
        pruning: the ``pruning`` section (which score is ranked).
        seed: the run's seed.
        num_samples: N.
        feature_dim: the size of the features of ``memory.layer``.
        labels: training labels (diagnostics only), or None.
        device: where the estimator's state lives (the training device).
        batch_size: samples embedded at a time by a refresh pass.
    """

    memory: MemoryConfig
    pruning: PruningConfig
    seed: int
    num_samples: int
    feature_dim: int
    labels: torch.Tensor | None
    device: torch.device
    batch_size: int


def _prediction(context: EstimatorContext) -> MemoryEstimator:
    return PredictionEntropy(normalize=context.memory.normalize)


def _in_batch(context: EstimatorContext) -> MemoryEstimator:
    memory = context.memory
    return InBatchEntropy(
        layer=memory.layer, tau=memory.tau, center=memory.center, normalize=memory.normalize
    )


def _bank(context: EstimatorContext) -> MemoryEstimator:
    memory = context.memory
    bank = BankMemory(
        num_samples=context.num_samples,
        dim=context.feature_dim,
        tau=memory.tau,
        k=memory.k,
        center=memory.center,
        normalize=memory.normalize,
        device=context.device,
        search_mode=memory.search,
        exact_below=memory.exact_below,
        layout=choose_bank_layout(memory.bank_layout, context.num_samples, memory.exact_below),
        ivf=IvfSearch(
            cell_size=memory.ivf_cell_size,
            probe=memory.ivf_probe,
            retrain_every=memory.ivf_retrain_every,
            seed=context.seed,
        ),
    )
    return FeatureBank(
        bank,
        layer=memory.layer,
        refresh_every=memory.refresh_every,
        labels=context.labels,
        seed=context.seed,
        prototypes=SCORES[score_kind(context.pruning)].needs_bank,
        batch_size=context.batch_size,
    )


# name -> builder; ``batch`` and ``bank`` are the ``memory.estimator`` choices of SSL runs,
# ``prediction`` is what supervised methods use whatever memory.estimator says
ESTIMATORS: dict[str, Callable[[EstimatorContext], MemoryEstimator]] = {
    "prediction": _prediction,
    "batch": _in_batch,
    "bank": _bank,
}


def build_estimator(name: str, context: EstimatorContext) -> MemoryEstimator:
    """The estimator registered as ``name`` (see :data:`ESTIMATORS`)."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown memory estimator {name!r}: use one of {', '.join(ESTIMATORS)}")
    return ESTIMATORS[name](context)
