"""SSL bank estimator of the memory term (DESIGN 3.2), with faiss neighbour search.

The bank holds, per sample, its latest backbone feature (mean of its two views, float16, on
the training device) and the cosine similarity of its two views. Rows are written whenever a
sample is trained (and for all samples by an optional refresh pass). At the end of an epoch the
written rows are centred and L2-normalised, indexed, and the k nearest neighbours of **every**
sample are searched, so samples that were pruned this epoch are re-scored too:

    m_i = H(softmax([sim(a_i, b_i), sim(i, n_1), ..., sim(i, n_k)] / tau)) / log(k + 1)

Memory: N x D float16 on the device (60k x 128 features = 15 MB; 1.28M x 2048 = 5.2 GB — for
datasets that large use ``memory.layer=projection``, which stores the projection instead).
"""

from __future__ import annotations

from typing import Any

import torch

from ssl_emp.neighbours import search
from ssl_emp.numerics import full_precision
from ssl_emp.pruning.memory import (
    center_and_normalize,
    positive_similarity,
    scale_entropy,
    softmax_entropy,
)


class BankMemory:
    """Per-sample feature bank and its end-of-epoch neighbour-entropy memory term.

    Args:
        num_samples: N.
        dim: feature size D.
        tau: softmax temperature tau_m.
        k: neighbours per sample.
        center: centre features (bank mean, batch mean for the positive) before the cosine.
        normalize: ``log`` (into [0, 1]) or ``none`` (nats).
        device: where the bank lives.
        use_faiss: search with faiss when installed (else torch).
    """

    def __init__(
        self,
        num_samples: int,
        dim: int,
        tau: float,
        k: int,
        center: bool = True,
        normalize: str = "log",
        device: torch.device | str = "cpu",
        use_faiss: bool = True,
    ) -> None:
        self.tau, self.k, self.center, self.normalize = tau, k, center, normalize
        self.use_faiss = use_faiss
        self.features = torch.zeros(num_samples, dim, dtype=torch.float16, device=device)
        self.positive = torch.zeros(num_samples, dtype=torch.float32, device=device)
        self.written = torch.zeros(num_samples, dtype=torch.bool, device=device)

    def write(self, indices: torch.Tensor, features: torch.Tensor) -> None:
        """Store the two views' features, shape (2, B, D), of the samples ``indices``."""
        features = features.detach()
        self.positive[indices] = positive_similarity(features, center=self.center)
        self.features[indices] = features.float().mean(dim=0).to(self.features.dtype)
        self.written[indices] = True

    @full_precision
    def compute(self, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
        """Memory term of every sample (NaN where nothing was written yet) and diagnostics.

        Args:
            labels: optional labels for the kNN label-agreement diagnostic (never in scores).
        """
        memory = torch.full_like(self.positive, float("nan"))
        rows = self.written.nonzero().squeeze(1)
        k = min(self.k, len(rows) - 1)
        if k < 1:
            return memory, {}
        bank = center_and_normalize(self.features[rows], self.center)
        similarities, neighbours = search(bank, bank, k + 1, use_faiss=self.use_faiss)
        # drop each row's own entry (normally first; with exact duplicates anywhere)
        is_self = neighbours == torch.arange(len(rows), device=neighbours.device)[:, None]
        keep = ~is_self
        keep[keep.sum(dim=1) > k, -1] = False  # rows where self was not among the k+1
        similarities = similarities[keep].view(len(rows), k)
        neighbours = neighbours[keep].view(len(rows), k)
        logits = torch.cat([self.positive[rows, None], similarities.to(self.positive.device)], 1)
        entropy = softmax_entropy(logits / self.tau)
        memory[rows] = scale_entropy(entropy, k + 1, self.normalize)
        stats: dict[str, Any] = {"bank_neighbour_sim_mean": float(similarities.mean())}
        if labels is not None:
            own = labels.to(rows.device)[rows]
            neighbour_labels = own[neighbours.to(rows.device)]
            stats["bank_knn_label_agreement"] = float(
                (neighbour_labels == own[:, None]).float().mean()
            )
        return memory, stats

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Bank contents for a checkpoint."""
        return {"features": self.features, "positive": self.positive, "written": self.written}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state_dict`."""
        for name in ("features", "positive", "written"):
            getattr(self, name).copy_(state[name])
