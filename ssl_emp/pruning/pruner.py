"""The pruner: a score table plus a selection policy, usable in any PyTorch training loop.

    pruner = Pruner(PruningConfig(policy="emp", rate=0.7), num_samples=N, epochs=E, seed=0)
    for epoch in range(E):
        for batch in pruner.select(epoch).split(batch_size):      # shuffle as you like
            losses = criterion(model(x[batch]), y[batch])          # reduction="none"
            loss = pruner.step(batch, losses, memory=entropy, epoch=epoch)
            loss.backward(); ...

``select`` picks the epoch's samples from the current scores; ``step`` is the one entry point
of every loop (the toolkit's trainer uses it too): it records the losses (and memory terms)
of the trained samples and returns their (InfoBatch-weighted) mean. Under ``torchrun`` it
gathers every rank's values itself, so all ranks keep the same table and select alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ssl_emp.collectives import all_gather_rows
from ssl_emp.data.batch import GlobalBatch
from ssl_emp.errors import NonFiniteLossError
from ssl_emp.pruning.accounting import epoch_diagnostics, selection_stats
from ssl_emp.pruning.options import check_pruning_options, direction, score_kind
from ssl_emp.pruning.policies import POLICIES, Policy, SelectionRequest
from ssl_emp.pruning.score_table import ScoreTable
from ssl_emp.pruning.scores import SCORES, Score, ScoreInputs, orient
from ssl_emp.pruning.selection import Selection, keep_count, ucb_values

if TYPE_CHECKING:
    from ssl_emp.config import PruningConfig


@dataclass(frozen=True)
class RecordedStep:
    """What :meth:`Pruner.record_step` returns.

    Attributes:
        loss: ``mean(weight_i * loss_i)`` over this process's samples, to backpropagate.
        losses: the detached losses of the whole global batch, in gathered order, (B,).
    """

    loss: torch.Tensor
    losses: torch.Tensor


class Pruner:
    """Dynamic data pruning with the policies of docs/design.md, section 2.5.

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
        check_pruning_options(config)
        self.config = config
        self.num_samples = num_samples
        self.epochs = epochs
        self.seed = seed
        self.device = torch.device(device)
        self.table = ScoreTable(num_samples, ema=config.ema, device=self.device)
        self.weights = torch.ones(num_samples, device=self.device)
        self.last_stats: dict[str, Any] = {}
        self.policy_state: dict[str, Any] = {}  # what a policy keeps between epochs (SCAN)

    @property
    def policy(self) -> Policy:
        """The configured policy (see :data:`~ssl_emp.pruning.policies.POLICIES`)."""
        return POLICIES[self.config.policy]

    @property
    def score_kind(self) -> str:
        """The name of what is ranked (``loss``, ``emp``, ``prototypicality``)."""
        return score_kind(self.config)

    @property
    def score(self) -> Score:
        """What is ranked (see :data:`~ssl_emp.pruning.scores.SCORES`)."""
        return SCORES[self.score_kind]

    @property
    def direction(self) -> str:
        """Which end of the ranking is kept: ``hard`` (highest) or ``easy`` (lowest)."""
        return direction(self.config)

    @property
    def keep(self) -> int:
        """K = ceil((1 - s) N) for the hard-rate rules."""
        return keep_count(self.num_samples, self.config.rate)

    def is_full_epoch(self, epoch: int) -> bool:
        """Whether ``epoch`` trains on all samples (full, warm-up, anneal, InfoBatch tail)."""
        config = self.config
        if self.policy.always_full or epoch < config.warmup_epochs:
            return True
        if epoch >= self.epochs - math.ceil(config.anneal * self.epochs - 1e-9):
            return True
        full_at = self.policy.full_at
        if full_at is not None and full_at(epoch - config.warmup_epochs, config.scan_cycle):
            return True
        # InfoBatch's release code prunes while its 1-based epoch count is <= delta * E, i.e.
        # 0-based epochs e < floor(delta * E); the rest train on all data
        return self.policy.full_from_delta and epoch + 1 > config.delta * self.epochs

    def _rng(self, epoch: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch, 0xE3])

    def scores(self, use_history: bool = False) -> np.ndarray:
        """The current score of every sample (``+inf`` = unseen), highest = hardest.

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
        return self.score.compute(ScoreInputs(loss=loss, table=table, config=self.config))

    def oriented_scores(self, use_history: bool = False) -> np.ndarray:
        """:meth:`scores` turned so that the rule keeps the highest (negated for
        ``direction=easy``; unseen samples stay first)."""
        return orient(self.scores(use_history), self.direction)

    def ranking_scores(self) -> np.ndarray:
        """The values the policy ranks (UCB: the upper confidence bound of the history)."""
        return self.scores(use_history=self.policy.ranks_history)

    @property
    def never_prunes(self) -> bool:
        """Whether every epoch trains on all data although the policy prunes (warm-up and
        annealing cover all epochs)."""
        if self.policy.always_full:
            return False
        return all(self.is_full_epoch(epoch) for epoch in range(self.epochs))

    def _choose(self, epoch: int) -> tuple[Selection, np.ndarray | None]:
        if self.is_full_epoch(epoch):
            return Selection(np.arange(self.num_samples)), None
        config = self.config
        request = SelectionRequest(
            num_samples=self.num_samples,
            keep=self.keep,
            rate=config.rate,
            eps=config.eps,
            rng=self._rng(epoch),
            scores=self.oriented_scores,
            pruned_epoch=epoch - config.warmup_epochs,
            view_losses=lambda: self.table.view_loss.double().cpu().numpy(),
            memo=self.policy_state,
            scan_cycle=config.scan_cycle,
            scan_ill_share=config.scan_ill_share,
        )
        selection, ranked = self.policy.rule(request)
        # the statistics describe the scores themselves, not their orientation
        return selection, None if ranked is None else orient(ranked, self.direction)

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
        self.last_stats = selection_stats(self.table, epoch, selection.indices, scores)
        self.last_stats.update(selection.stats)
        return kept

    def step(
        self,
        batch: GlobalBatch | torch.Tensor,
        per_sample_loss: torch.Tensor,
        memory: torch.Tensor | None = None,
        *,
        epoch: int,
        view_losses: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Record a trained batch's scores and return the scalar loss to backpropagate.

        The single entry point of every training loop. Under ``torchrun`` the losses (and
        memory terms) of every rank's shard are all-gathered here, so every rank records the
        whole global batch and keeps an identical score table.

        Args:
            batch: the samples trained: a :class:`~ssl_emp.data.batch.GlobalBatch`, or this
                process's sample indices (each rank's own; gathered).
            per_sample_loss: differentiable loss of this process's samples, in the order of
                ``batch.local``.
            memory: optional memory term per sample: this process's samples, or the whole
                global batch in gathered order (as an estimator that saw every shard gives it).
            epoch: the epoch being trained (0-based; the age of the scores).
            view_losses: optional loss of each view order of this process's samples, shape
                (2, B_local), for policies that read them (SCAN); None records
                ``per_sample_loss`` for both.

        Returns:
            ``mean(weight_i * loss_i)`` over this process's samples: the plain mean unless
            InfoBatch reweights.

        Raises:
            NonFiniteLossError: a loss of any rank is NaN or infinite; nothing was recorded.

        Shape:
            per_sample_loss: (B_local,); memory: (B_local,) or (B,); returns a scalar.

        Example:
            >>> from ssl_emp.config import PruningConfig
            >>> pruner = Pruner(PruningConfig(policy="full"), num_samples=4, epochs=1, seed=0)
            >>> losses = torch.tensor([1.0, 3.0], requires_grad=True)
            >>> pruner.step(torch.tensor([0, 2]), losses, epoch=0)
            tensor(2., grad_fn=<MeanBackward0>)
            >>> pruner.column("loss").tolist(), pruner.column("train_count").tolist()
            ([1.0, inf, 3.0, inf], [1, 0, 1, 0])
        """
        return self.record_step(
            batch, per_sample_loss, memory, epoch=epoch, view_losses=view_losses
        ).loss

    def record_step(
        self,
        batch: GlobalBatch | torch.Tensor,
        per_sample_loss: torch.Tensor,
        memory: torch.Tensor | None = None,
        *,
        epoch: int,
        view_losses: torch.Tensor | None = None,
    ) -> RecordedStep:
        """:meth:`step`, also returning the gathered per-sample losses it recorded (what a
        loop that reports per-step losses needs, without a second all-gather)."""
        if not isinstance(batch, GlobalBatch):
            batch = GlobalBatch.from_local(batch)
        local_loss = per_sample_loss.float()
        losses = all_gather_rows(local_loss.detach(), batch.sizes)
        if not bool(torch.isfinite(losses).all()):
            raise NonFiniteLossError(f"{int((~torch.isfinite(losses)).sum())} non-finite losses")
        if memory is not None and len(memory) != len(batch):
            memory = all_gather_rows(memory.detach(), batch.sizes)
        if memory is not None:
            memory = memory.to(self.device)
        if view_losses is not None:  # (2, B_local) -> (B, 2) in gathered order
            view_losses = all_gather_rows(view_losses.detach().float().T, batch.sizes)
            view_losses = view_losses.to(self.device)
        self.table.record(
            batch.gathered.to(self.device),
            losses.to(self.device),
            memory,
            epoch,
            view_losses=view_losses,
        )
        weights = self.weights[batch.local.to(self.device)]
        loss = (weights.to(local_loss.device, local_loss.dtype) * local_loss).mean()
        return RecordedStep(loss=loss, losses=losses)

    def column(self, name: str) -> torch.Tensor:
        """One per-sample column of the score table, on its device, to read (not to change):
        ``loss``, ``memory``, ``view_loss``, ``prototype_distance``, ``loss_mean``,
        ``loss_var``, ``observations``, ``train_count``, ``last_seen``."""
        table = self.table.state_dict()
        if name not in table:
            raise ValueError(f"no score-table column {name!r}: use one of {', '.join(table)}")
        return table[name]

    def sample_arrays(self) -> dict[str, np.ndarray]:
        """Every sample's ranked score and table entries as host arrays, for result files and
        loggers: ``score`` (what the policy ranks, e.g. UCB's bound), ``memory``,
        ``train_count``, ``loss``, ``last_seen`` and, where the score ranks it,
        ``prototype_distance``."""
        table = self.table
        arrays = {
            "score": self.ranking_scores(),
            "memory": table.memory.cpu().numpy(),
            "train_count": table.train_count.cpu().numpy(),
            "loss": table.loss.cpu().numpy(),
            "last_seen": table.last_seen.cpu().numpy(),
        }
        if self.score.needs_bank:
            arrays["prototype_distance"] = table.prototype_distance.cpu().numpy()
        return arrays

    def set_memory(self, memory: torch.Tensor) -> None:
        """Replace every sample's memory term (an estimator that re-scores all samples)."""
        self.table.set_memory(memory.to(self.device))

    def set_columns(self, columns: dict[str, torch.Tensor]) -> None:
        """Replace whole columns of the table (``memory``, ``prototype_distance``), as an
        estimator's end-of-epoch pass gives them."""
        for name, values in columns.items():
            self.table.set_column(name, values.to(self.device))

    def epoch_diagnostics(self, epoch: int, kept: torch.Tensor) -> dict[str, Any]:
        """LFL diagnostics after ``epoch`` was trained on the samples ``kept``
        (:func:`~ssl_emp.pruning.accounting.epoch_diagnostics`)."""
        return epoch_diagnostics(self.table, self.config.warmup_epochs, epoch, kept)

    def state_dict(self) -> dict[str, Any]:
        """Score table, weights and the last selection's statistics, for a checkpoint (the RNG
        is derived from seed and epoch, so it needs no state)."""
        return {
            "table": self.table.state_dict(),
            "weights": self.weights,
            "last_stats": dict(self.last_stats),
            "policy_state": dict(self.policy_state),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.table.load_state_dict(state["table"])
        self.weights.copy_(state["weights"])
        self.last_stats = dict(state.get("last_stats", {}))
        self.policy_state = dict(state.get("policy_state", {}))
