"""SSL bank estimator of the memory term (docs/design.md, 2.2), with faiss neighbour search.

The bank holds, per sample, the latest features of its two views (float16, on the training
device). Rows are written whenever a sample is trained (and for all samples by an optional
refresh pass). At the end of an epoch every written view is put in one frame (centred by the
bank's mean view, L2-normalised); a sample's positive similarity is the cosine of its two
views, its representative the normalised mean of its two views, and the k nearest
representatives of **every** sample are searched, so samples pruned this epoch are re-scored
too:

    m_i = H(softmax([cos(a_i, b_i), cos(r_i, r_n1), ..., cos(r_i, r_nk)] / tau)) / log(k + 1)

Memory: 2 x N x D float16 on the device (60k x 128 features = 31 MB; 1.28M x 2048 = 10.5 GB,
so for datasets that large use ``memory.layer=projection``, which stores the 128-d projection
instead: 655 MB).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ssl_emp.errors import UserInputError
from ssl_emp.neighbours import FaissSearch, IvfSearch, search
from ssl_emp.numerics import full_precision
from ssl_emp.pruning.memory import center_and_normalize, scale_entropy, softmax_entropy


class BankMemory:
    """Per-sample two-view feature bank and its end-of-epoch neighbour-entropy memory term.

    Args:
        num_samples: N.
        dim: feature size D.
        tau: softmax temperature tau_m.
        k: neighbours per sample.
        center: centre every view by the bank's mean view before the cosines.
        normalize: ``log`` (into [0, 1]) or ``none`` (nats).
        device: where the bank lives.
        use_faiss: search with faiss when installed (else torch).
        search_mode: ``exact``, ``ivf`` (approximate, see :class:`~ssl_emp.neighbours.IvfSearch`)
            or ``auto`` (exact below ``exact_below`` written rows, else ivf).
        exact_below: the ``auto`` threshold.
        ivf: the approximate searcher (its cell size, probe count and retraining cadence).
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
        search_mode: str = "exact",
        exact_below: int = 20000,
        ivf: IvfSearch | None = None,
    ) -> None:
        self.tau, self.k, self.center, self.normalize = tau, k, center, normalize
        self.use_faiss = use_faiss
        self.searcher = FaissSearch()  # created once: GPU resources are reused every epoch
        self.search_mode, self.exact_below = search_mode, exact_below
        self.ivf = ivf or IvfSearch()
        self.last_neighbours: torch.Tensor | None = None  # (rows, k) of the last pass
        self.views = torch.zeros(num_samples, 2, dim, dtype=torch.float16, device=device)
        self.written = torch.zeros(num_samples, dtype=torch.bool, device=device)

    def write(self, indices: torch.Tensor, features: torch.Tensor) -> None:
        """Store the two views' features, shape (2, B, D), of the samples ``indices``."""
        self.views[indices] = features.detach().transpose(0, 1).to(self.views.dtype)
        self.written[indices] = True

    def frame(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The written ``rows`` in one frame: (cosine of each sample's two views, the
        normalised mean of its two views), both after centring by the mean view of ``rows``.

        Shape:
            rows: (R,) -> ((R,), (R, D)).
        """
        views = self.views[rows].float()
        count, _, dim = views.shape
        flat = center_and_normalize(views.reshape(2 * count, dim), self.center)
        first, second = flat.view(count, 2, dim).unbind(dim=1)
        positive = (first * second).sum(dim=-1)
        return positive, F.normalize(first + second, dim=-1)

    @full_precision
    def compute(self, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
        """Memory term of every sample (NaN where nothing was written yet) and diagnostics.

        Args:
            labels: optional labels for the kNN label-agreement diagnostic (never in scores).
        """
        memory = torch.full(
            (len(self.written),), float("nan"), dtype=torch.float32, device=self.views.device
        )
        rows = self.written.nonzero().squeeze(1)
        k = min(self.k, len(rows) - 1)
        if k < 1:
            return memory, {}
        positive, representatives = self.frame(rows)
        similarities, neighbours, method = self._neighbours(representatives, k + 1)
        # drop each row's own entry (normally first; with exact duplicates anywhere)
        is_self = neighbours == torch.arange(len(rows), device=neighbours.device)[:, None]
        keep = ~is_self
        keep[keep.sum(dim=1) > k, -1] = False  # rows where self was not among the k+1
        similarities = similarities[keep].view(len(rows), k).to(positive.device)
        neighbours = neighbours[keep].view(len(rows), k)
        self.last_neighbours = neighbours
        logits = torch.cat([positive[:, None], similarities], 1)
        entropy = softmax_entropy(logits / self.tau)
        memory[rows] = scale_entropy(entropy, k + 1, self.normalize)
        stats: dict[str, Any] = {"bank_neighbour_sim_mean": float(similarities.mean())}
        if method == "ivf":  # exact passes keep the record they always had
            stats["bank_ivf_cells"] = self.ivf.cells_for(len(rows))
            stats["bank_ivf_exact_fallbacks"] = self.ivf.last_exact_fallbacks
        if labels is not None:
            own = labels.to(rows.device)[rows]
            neighbour_labels = own[neighbours.to(rows.device)]
            stats["bank_knn_label_agreement"] = float(
                (neighbour_labels == own[:, None]).float().mean()
            )
        return memory, stats

    def approximate(self, rows: int) -> bool:
        """Whether a search over ``rows`` rows is approximate (ivf) under ``search_mode``."""
        return self.search_mode == "ivf" or (
            self.search_mode == "auto" and rows >= self.exact_below
        )

    def _neighbours(
        self, representatives: torch.Tensor, k: int
    ) -> tuple[torch.Tensor, torch.Tensor, str]:
        """The ``k`` most similar rows of every row (itself included), and the method used."""
        if self.approximate(len(representatives)):
            found = self.ivf.search(representatives, representatives, k)
            return found[0], found[1], "ivf"
        found = search(representatives, representatives, k, self.use_faiss, self.searcher)
        return found[0], found[1], "exact"

    def state_dict(self) -> dict[str, Any]:
        """Bank contents (and the approximate search's cells) for a checkpoint."""
        return {"views": self.views, "written": self.written, "ivf": self.ivf.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        if "views" not in state:
            raise UserInputError(
                "this checkpoint's memory bank has the older one-view layout (features + "
                "positive); resume it with the ssl_emp version that wrote it, or start a new run"
            )
        self.views.copy_(state["views"])
        self.written.copy_(state["written"])
        if "ivf" in state:
            self.ivf.load_state_dict(state["ivf"])
