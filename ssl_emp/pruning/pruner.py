"""The pruner: a score table plus a selection rule, usable in any PyTorch training loop.

    pruner = Pruner(PruningConfig(policy="emp", rate=0.7), num_samples=N, epochs=E, seed=0)
    for epoch in range(E):
        for batch in pruner.select(epoch).split(batch_size):      # shuffle as you like
            losses = criterion(model(x[batch]), y[batch])          # reduction="none"
            loss = pruner.update(batch, losses, memory=entropy)    # scalar to backpropagate
            loss.backward(); ...

``select`` picks the epoch's samples from the current scores; ``update`` records the losses
(and memory terms) of the trained samples and returns their (InfoBatch-weighted) mean.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ssl_emp.accounting import gini
from ssl_emp.config import PruningConfig
from ssl_emp.errors import UserInputError
from ssl_emp.pruning.score_table import ScoreTable, combine_scores
from ssl_emp.pruning.selection import (
    Selection,
    keep_count,
    select_eps_greedy,
    select_infobatch,
    select_random,
    select_top,
    ucb_values,
)

INFOBATCH_MAX_RATE = 0.9  # keep ratio floored at 0.1: weights of at most 10x


def _quantiles(values: np.ndarray, prefix: str) -> dict[str, float | None]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {f"{prefix}_{name}": None for name in ("mean", "std", "q10", "q50", "q90")}
    q10, q50, q90 = np.quantile(values, [0.1, 0.5, 0.9])
    return {
        f"{prefix}_mean": float(values.mean()),
        f"{prefix}_std": float(values.std()),
        f"{prefix}_q10": float(q10),
        f"{prefix}_q50": float(q50),
        f"{prefix}_q90": float(q90),
    }


class Pruner:
    """Dynamic data pruning with the policies of DESIGN 3.3.

    Args:
        config: the ``pruning`` section (policy, rate, score, combine, beta, ...).
        num_samples: N, the size of the dataset being pruned.
        epochs: E, the number of epochs (for ``anneal`` and InfoBatch's ``delta``).
        seed: seed of every random choice (combined with the epoch).
        device: device of the score table (where the losses come from).
    """

    def __init__(
        self,
        config: PruningConfig,
        num_samples: int,
        epochs: int,
        seed: int,
        device: torch.device | str = "cpu",
    ) -> None:
        if config.policy == "infobatch" and config.rate > INFOBATCH_MAX_RATE:
            raise UserInputError(
                f"pruning.rate={config.rate} is too high for infobatch: it keeps at least 10% of "
                f"below-mean samples (weights up to 10x); use pruning.rate<={INFOBATCH_MAX_RATE}"
            )
        self.config = config
        self.num_samples = num_samples
        self.epochs = epochs
        self.seed = seed
        self.device = torch.device(device)
        self.table = ScoreTable(num_samples, ema=config.ema, device=self.device)
        self.weights = torch.ones(num_samples, device=self.device)
        self.last_stats: dict[str, Any] = {}

    @property
    def rule(self) -> str:
        """The selection rule (the ``emp`` preset is eps-greedy over the EMP score)."""
        return "eps_greedy" if self.config.policy == "emp" else self.config.policy

    @property
    def score_kind(self) -> str:
        """``emp`` when the memory term enters the score, else ``loss``."""
        if self.config.score is not None:
            return self.config.score
        return "emp" if self.config.policy == "emp" else "loss"

    @property
    def keep(self) -> int:
        """K = ceil((1 - s) N) for the hard-rate rules."""
        return keep_count(self.num_samples, self.config.rate)

    def is_full_epoch(self, epoch: int) -> bool:
        """Whether ``epoch`` trains on all samples (full, warm-up, anneal, InfoBatch tail)."""
        config = self.config
        if config.policy == "full" or epoch < config.warmup_epochs:
            return True
        if epoch >= self.epochs - math.ceil(config.anneal * self.epochs - 1e-9):
            return True
        return config.policy == "infobatch" and epoch >= config.delta * self.epochs

    def _rng(self, epoch: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch, 0xE3])

    def scores(self, use_history: bool = False) -> np.ndarray:
        """The current score of every sample (``+inf`` = unseen), as used by the rule.

        Args:
            use_history: rank by the UCB value of the loss history instead of the latest loss.
        """
        table = self.table
        loss = table.loss.double().cpu().numpy()
        if use_history:
            loss = ucb_values(
                table.loss_mean.double().cpu().numpy(),
                table.loss_var.double().cpu().numpy(),
                table.observations.cpu().numpy(),
                self.config.ucb_c,
            )
        if self.score_kind == "loss":
            return loss
        memory = table.memory.double().cpu().numpy()
        return combine_scores(loss, memory, self.config.beta, self.config.combine)

    def _choose(self, epoch: int) -> tuple[Selection, np.ndarray | None]:
        if self.is_full_epoch(epoch):
            return Selection(np.arange(self.num_samples)), None
        rng = self._rng(epoch)
        rule = self.rule
        if rule == "random":
            return select_random(self.num_samples, self.keep, rng), None
        scores = self.scores(use_history=rule == "ucb")
        if rule in ("topk", "ucb"):
            return select_top(scores, self.keep, rng), scores
        if rule == "eps_greedy":
            return select_eps_greedy(scores, self.keep, self.config.eps, rng), scores
        return select_infobatch(scores, self.config.rate, rng), scores

    def select(self, epoch: int) -> torch.Tensor:
        """The sample indices to train in ``epoch`` (sorted), on the table's device.

        Also sets the per-sample loss weights used by :meth:`update` and the selection
        diagnostics in :attr:`last_stats`.
        """
        selection, scores = self._choose(epoch)
        self.weights.fill_(1.0)
        kept = torch.from_numpy(selection.indices).long().to(self.device)
        if selection.weights is not None:
            self.weights[kept] = torch.from_numpy(selection.weights).float().to(self.device)
        self.last_stats = self._selection_stats(epoch, selection.indices, scores)
        return kept

    def update(
        self,
        indices: torch.Tensor,
        per_sample_loss: torch.Tensor,
        memory: torch.Tensor | None = None,
        epoch: int | None = None,
    ) -> torch.Tensor:
        """Record the trained samples' losses (and memory terms); return the scalar loss.

        Args:
            indices: sample indices of the batch (into the dataset of N samples).
            per_sample_loss: differentiable loss per sample, shape (B,).
            memory: optional memory term per sample, shape (B,).
            epoch: the current epoch (for the age of scores); default: last selected epoch.

        Returns:
            ``mean(weight_i * loss_i)``: the plain mean unless InfoBatch reweights.
        """
        self.record(indices, per_sample_loss, memory, epoch)
        return self.weighted_loss(indices, per_sample_loss)

    def record(
        self,
        indices: torch.Tensor,
        per_sample_loss: torch.Tensor,
        memory: torch.Tensor | None = None,
        epoch: int | None = None,
    ) -> None:
        """Record losses (and memory terms) of trained samples in the score table."""
        seen_epoch = self.last_stats.get("epoch", 0) if epoch is None else epoch
        self.table.record(indices.to(self.device), per_sample_loss.detach(), memory, seen_epoch)

    def weighted_loss(self, indices: torch.Tensor, per_sample_loss: torch.Tensor) -> torch.Tensor:
        """``mean(weight_i * loss_i)`` with the policy's per-sample weights (1 unless InfoBatch)."""
        weights = self.weights[indices.to(self.device)]
        return (weights.to(per_sample_loss.device, per_sample_loss.dtype) * per_sample_loss).mean()

    def _selection_stats(
        self, epoch: int, kept: np.ndarray, scores: np.ndarray | None
    ) -> dict[str, Any]:
        table = self.table
        stats: dict[str, Any] = {"epoch": epoch, "selected": int(len(kept))}
        if scores is not None:
            stats.update(_quantiles(scores, "score"))
            loss = table.loss.double().cpu().numpy()
            loss_top = np.argsort(-loss, kind="stable")[: len(kept)]
            stats["overlap_with_loss_ranking"] = float(
                len(np.intersect1d(loss_top, kept)) / max(len(kept), 1)
            )
        last_seen = table.last_seen.cpu().numpy()
        seen = last_seen >= 0
        stats["score_age_mean"] = float((epoch - last_seen[seen]).mean()) if seen.any() else None
        return stats

    def epoch_diagnostics(self, epoch: int, kept: torch.Tensor) -> dict[str, Any]:
        """LFL diagnostics after ``epoch`` was trained on the samples ``kept`` (DESIGN 3.4).

        Returns the Gini coefficient of the training counts, the fraction of samples trained
        at most once, the fraction not trained since warm-up ended (None during warm-up), and
        the memory term's mean, spread and quantiles over all samples and over the kept ones.
        """
        table = self.table
        counts = table.train_count
        warmup = self.config.warmup_epochs
        stats: dict[str, Any] = {
            "train_count_gini": gini(counts),
            "frac_trained_at_most_once": float((counts <= 1).float().mean()),
            "frac_never_revisited": (
                float((table.last_seen < warmup).float().mean()) if epoch >= warmup else None
            ),
        }
        memory = table.memory.double().cpu().numpy()
        stats.update(_quantiles(memory, "memory"))
        stats.update(_quantiles(memory[kept.cpu().numpy()], "memory_kept"))
        return stats

    def state_dict(self) -> dict[str, Any]:
        """Score table, weights and the last selection's statistics, for a checkpoint (the RNG
        is derived from seed and epoch, so it needs no state)."""
        return {
            "table": self.table.state_dict(),
            "weights": self.weights,
            "last_stats": dict(self.last_stats),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.table.load_state_dict(state["table"])
        self.weights.copy_(state["weights"])
        self.last_stats = dict(state.get("last_stats", {}))
