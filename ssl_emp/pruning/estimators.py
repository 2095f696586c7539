"""Memory estimators (docs/design.md, 2.2): one object per memory term, owning its state.

The trainer asks an estimator for the memory terms of each trained global batch (before the
pruner records it), tells it which batches were recorded, and gives it the end of each epoch
to re-score samples. Computing a memory term never trains: estimators read the features a
training step already produced, or embed samples through the method's side-effect-free
:meth:`~ssl_emp.methods.base.Method.embed`.

- :class:`PredictionEntropy`: supervised, ``H(softmax(logits)) / log(C)``.
- :class:`InBatchEntropy`: SSL, InfoNCE as a (2B-1)-way classifier over the global batch.
- :class:`FeatureBank`: SSL, the same entropy over faiss nearest neighbours in a bank of every
  sample's latest features; re-scores every sample at the end of an epoch.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ssl_emp.collectives import all_gather_rows, rank_and_world_size
from ssl_emp.data.batch import GlobalBatch, index_batches
from ssl_emp.methods.base import FeatureLayer, Method, MethodOutput
from ssl_emp.neighbours import IvfSearch
from ssl_emp.pruning.memory import batch_memory, supervised_memory
from ssl_emp.pruning.memory_bank import BankMemory, choose_bank_layout
from ssl_emp.pruning.pruner import score_kind
from ssl_emp.pruning.scores import SCORES

if TYPE_CHECKING:
    from ssl_emp.config import Config
    from ssl_emp.data.dataset import ImageData


class MemoryEstimator:
    """The interface of every memory term (the base class computes none)."""

    def batch_memory(self, batch: GlobalBatch, output: MethodOutput) -> torch.Tensor | None:
        """Memory terms of a training step's samples, from what the step computed (pure).

        Returns:
            (B,) for the gathered global batch, (B_local,) for this process's samples, or None
            when this estimator scores at epoch ends only.
        """
        return None

    def observe(self, batch: GlobalBatch, output: MethodOutput) -> None:
        """A step whose scores the pruner recorded (after :meth:`batch_memory`)."""

    def end_epoch(
        self, epoch: int, method: Method, data: ImageData, batch_size: int
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """After ``epoch`` (0-based) was trained: new values of whole score-table columns
        (``memory``, ``prototype_distance``; none to keep the recorded ones) and statistics
        for the metrics."""
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

    def batch_memory(self, batch: GlobalBatch, output: MethodOutput) -> torch.Tensor | None:
        if output.logits is None:
            raise ValueError("PredictionEntropy needs a method that returns logits")
        return supervised_memory(output.logits, normalize=self.normalize)


def _gather_views(batch: GlobalBatch, features: torch.Tensor) -> torch.Tensor:
    """(V, B_local, D) features of every rank's shard -> (V, B, D) in gathered order."""
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

    def __init__(
        self, layer: FeatureLayer, tau: float, center: bool = True, normalize: str = "log"
    ) -> None:
        self.layer, self.tau, self.center, self.normalize = layer, tau, center, normalize

    def batch_memory(self, batch: GlobalBatch, output: MethodOutput) -> torch.Tensor | None:
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
    are trained (and, every ``refresh_every`` epochs, for all samples through
    :meth:`~ssl_emp.methods.base.Method.embed`), then neighbour entropies of every sample.

    Args:
        bank: the feature bank and its neighbour search.
        layer: which features go into the bank.
        refresh_every: re-embed every sample after every n-th epoch (0 = never).
        labels: labels for the kNN label-agreement diagnostic (never in scores).
        seed: seed of the refresh's views (a stream of its own, see :meth:`refresh`).
        prototypes: also give every sample's distance to its nearest k-means centroid (the
            prototypicality score).
    """

    def __init__(
        self,
        bank: BankMemory,
        layer: FeatureLayer,
        refresh_every: int = 0,
        labels: torch.Tensor | None = None,
        seed: int = 0,
        prototypes: bool = False,
    ) -> None:
        self.bank, self.layer, self.refresh_every, self.labels = bank, layer, refresh_every, labels
        self.seed, self.prototypes = seed, prototypes

    def observe(self, batch: GlobalBatch, output: MethodOutput) -> None:
        features = output.layer(self.layer)
        if features is not None:
            self.bank.write(batch.gathered, _gather_views(batch, features))

    @torch.no_grad()
    def refresh(self, method: Method, data: ImageData, batch_size: int, epoch: int = 0) -> None:
        """Re-embed every sample (eval mode, fresh views) into the bank; ranks share the work.

        Training is left exactly as it was: ``embed`` changes no weight, queue or momentum,
        eval mode leaves the BN statistics alone, and the views are drawn from a generator
        seeded by (seed, epoch, rank) inside ``torch.random.fork_rng``, so the training
        augmentation stream continues as if no refresh had happened.
        """
        was_training = method.training
        method.eval()
        rank, world_size = rank_and_world_size()
        device = self.bank.device
        cuda = [device.index or 0] if device.type == "cuda" else []
        stream = np.random.SeedSequence([self.seed, epoch, rank, 0xBA4C]).generate_state(1)[0]
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(int(stream))
            for indices in index_batches(torch.arange(len(data), device=device), batch_size):
                batch = GlobalBatch.shard(indices, rank, world_size)
                images = data.images[batch.local].to(device, non_blocking=True)
                features = method.embed(images, layer=self.layer)
                self.bank.write(batch.gathered, _gather_views(batch, features))
        method.train(was_training)

    def end_epoch(
        self, epoch: int, method: Method, data: ImageData, batch_size: int
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        started = time.perf_counter()
        if self.refresh_every and (epoch + 1) % self.refresh_every == 0:
            self.refresh(method, data, batch_size, epoch=epoch)
        columns, stats = self.bank.compute_columns(labels=self.labels, prototypes=self.prototypes)
        stats["bank_pass_s"] = time.perf_counter() - started
        return columns, stats

    def state_dict(self) -> dict[str, Any] | None:
        return self.bank.state_dict()

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if state is not None:
            self.bank.load_state_dict(state)


def build_estimator(
    config: Config, method: Method, data: ImageData, device: torch.device
) -> MemoryEstimator:
    """The memory estimator that ``config.memory`` and the method call for."""
    memory = config.memory
    if method.supervised:
        return PredictionEntropy(normalize=memory.normalize)
    if not method.two_views:
        raise ValueError(f"{type(method).__name__}: the SSL memory terms need two views")
    if memory.estimator == "batch":
        return InBatchEntropy(
            layer=memory.layer, tau=memory.tau, center=memory.center, normalize=memory.normalize
        )
    dim = config.model.proj_dim if memory.layer == "projection" else method.backbone.feature_dim
    bank = BankMemory(
        num_samples=len(data),
        dim=dim,
        tau=memory.tau,
        k=memory.k,
        center=memory.center,
        normalize=memory.normalize,
        device=device,
        search_mode=memory.search,
        exact_below=memory.exact_below,
        layout=choose_bank_layout(memory.bank_layout, len(data), memory.exact_below),
        ivf=IvfSearch(
            cell_size=memory.ivf_cell_size,
            probe=memory.ivf_probe,
            retrain_every=memory.ivf_retrain_every,
            seed=config.seed,
        ),
    )
    return FeatureBank(
        bank,
        layer=memory.layer,
        refresh_every=memory.refresh_every,
        labels=data.labels,
        seed=config.seed,
        prototypes=SCORES[score_kind(config.pruning)].needs_bank,
    )
