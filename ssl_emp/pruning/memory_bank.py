"""SSL bank estimator of the memory term (docs/design.md, 2.2), with faiss neighbour search.

Rows are written whenever a sample is trained (and for all samples by an optional refresh
pass). At the end of an epoch the k nearest representatives of **every** sample are searched,
so samples pruned this epoch are re-scored too:

    m_i = H(softmax([cos(a_i, b_i), cos(r_i, r_n1), ..., cos(r_i, r_nk)] / tau)) / log(k + 1)

where a_i, b_i are the sample's two views after centring and L2 normalisation, and r_i the
normalised mean of the two. Two layouts hold this:

- ``views``: the latest features of both views, float16, 2 x N x D (60k x 128 = 31 MB). At the
  pass, every written view is centred by the bank's mean view, so the positive and the
  neighbours are in one frame.
- ``compact``: what the pass needs, computed when the sample is written: r_i (float16, N x D)
  and cos(a_i, b_i) (float32, N), with the views centred by a running mean view of the last
  few thousand written samples. Half the memory (1.28 M x 128: 334 MB instead of 655 MB), at
  the price of a frame that moves with the writes instead of one per pass.

For very large banks of wide features (1.28 M x 2048) use ``memory.layer=projection`` (128-d).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F

from ssl_emp.errors import UserInputError
from ssl_emp.neighbours import FaissSearch, IvfSearch, search
from ssl_emp.numerics import full_precision
from ssl_emp.pruning.memory import center_and_normalize, scale_entropy, softmax_entropy

BankLayout = Literal["views", "compact"]
MEAN_HORIZON = 2560  # samples the compact layout's running mean view averages over


def choose_bank_layout(choice: str, num_samples: int, exact_below: int) -> BankLayout:
    """The layout ``memory.bank_layout`` asks for; ``auto``: ``views`` below ``exact_below``
    samples (where exact search is the default too), ``compact`` from there on. The config
    schema admits only these three names."""
    if choice == "compact" or (choice == "auto" and num_samples >= exact_below):
        return "compact"
    return "views"


class BankMemory:
    """Per-sample feature bank and its end-of-epoch neighbour-entropy memory term.

    Args:
        num_samples: N.
        dim: feature size D.
        tau: softmax temperature tau_m.
        k: neighbours per sample.
        center: centre the views by a mean view before the cosines.
        normalize: ``log`` (into [0, 1]) or ``none`` (nats).
        device: where the bank lives.
        use_faiss: search with faiss when installed (else torch).
        search_mode: ``exact``, ``ivf`` (approximate, see :class:`~ssl_emp.neighbours.IvfSearch`)
            or ``auto`` (exact below ``exact_below`` written rows, else ivf).
        exact_below: the ``auto`` threshold.
        ivf: the approximate searcher (its cell size, probe count and retraining cadence).
        layout: ``views`` (both views, one frame per pass) or ``compact`` (representative and
            positive per sample, centred when written); see the module docstring.
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
        layout: BankLayout = "views",
    ) -> None:
        self.tau, self.k, self.center, self.normalize = tau, k, center, normalize
        self.use_faiss = use_faiss
        self.searcher = FaissSearch()  # created once: GPU resources are reused every epoch
        self.search_mode, self.exact_below = search_mode, exact_below
        self.ivf = ivf or IvfSearch()
        self.layout, self.dim = layout, dim
        self.last_neighbours: torch.Tensor | None = None  # (rows, k) of the last pass
        self.device = torch.device(device)
        self.views: torch.Tensor | None = None
        self.representatives: torch.Tensor | None = None
        self.positives: torch.Tensor | None = None
        self.last_mean_view: torch.Tensor | None = None
        self.mean_view_set = False  # a plain bool: no device sync on every write
        if layout == "views":
            self.views = torch.zeros(num_samples, 2, dim, dtype=torch.float16, device=device)
        elif layout == "compact":
            self.representatives = torch.zeros(num_samples, dim, dtype=torch.float16, device=device)
            self.positives = torch.zeros(num_samples, dtype=torch.float32, device=device)
            self.last_mean_view = torch.zeros(dim, dtype=torch.float32, device=device)
        else:
            raise ValueError(f"unknown bank layout {layout!r}: use views or compact")
        self.written = torch.zeros(num_samples, dtype=torch.bool, device=device)

    def nbytes(self) -> int:
        """Bytes the bank's tensors take on the device."""
        held = (self.views, self.representatives, self.positives, self.written)
        return sum(t.numel() * t.element_size() for t in held if t is not None)

    def write(self, indices: torch.Tensor, features: torch.Tensor) -> None:
        """Store the two views' features, shape (2, B, D), of the samples ``indices``."""
        if self.views is not None:
            self.views[indices] = features.detach().transpose(0, 1).to(self.views.dtype)
        else:
            positive, representative = self._compact_rows(features.detach())
            assert self.representatives is not None and self.positives is not None
            self.representatives[indices] = representative.to(self.representatives.dtype)
            self.positives[indices] = positive
        self.written[indices] = True

    @full_precision
    def _compact_rows(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(cosine of the two views, normalised mean of the two) of a written batch, the views
        centred by the running mean view (see :meth:`_update_mean_view`)."""
        _, count, dim = features.shape
        flat = features.reshape(2 * count, dim).float()
        if self.center:
            flat = flat - self._update_mean_view(flat)
        first, second = F.normalize(flat, dim=-1).view(2, count, dim).unbind(dim=0)
        return (first * second).sum(dim=-1), F.normalize(first + second, dim=-1)

    def _update_mean_view(self, flat: torch.Tensor) -> torch.Tensor:
        """The running mean view, after a write of ``flat`` (2 x count views): an exponential
        average over about the last ``MEAN_HORIZON`` written samples (a write of ``count``
        samples weighs ``1 - exp(-count / MEAN_HORIZON)``: 0.095 for a batch of 256), so the
        frame follows the encoder's drift while a small write barely moves it; the first
        write sets it. On Fashion-MNIST's 60k learned features it agrees with the ``views``
        layout's one frame per pass to a rank correlation of 0.999 (docs/benchmarks.md)."""
        assert self.last_mean_view is not None
        written = flat.mean(dim=0)
        if not self.mean_view_set:
            self.last_mean_view = written
            self.mean_view_set = True
        else:
            weight = 1.0 - math.exp(-(len(flat) // 2) / MEAN_HORIZON)
            self.last_mean_view = torch.lerp(self.last_mean_view, written, weight)
        return self.last_mean_view

    def frame(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The written ``rows`` in one frame: (cosine of each sample's two views, the
        normalised mean of its two views); in the ``views`` layout both after centring by the
        mean view of ``rows``, in the ``compact`` layout as they were written.

        Shape:
            rows: (R,) -> ((R,), (R, D)).
        """
        if self.views is None:
            assert self.representatives is not None and self.positives is not None
            return self.positives[rows], F.normalize(self.representatives[rows].float(), dim=-1)
        views = self.views[rows].float()
        count, _, dim = views.shape
        flat = center_and_normalize(views.reshape(2 * count, dim), self.center)
        first, second = flat.view(count, 2, dim).unbind(dim=1)
        positive = (first * second).sum(dim=-1)
        return positive, F.normalize(first + second, dim=-1)

    def compute(self, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
        """Memory term of every sample (NaN where nothing was written yet) and diagnostics.

        Args:
            labels: optional labels for the kNN label-agreement diagnostic (never in scores).
        """
        columns, stats = self.compute_columns(labels=labels)
        return columns["memory"], stats

    @full_precision
    def compute_columns(
        self, labels: torch.Tensor | None = None, prototypes: bool = False
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The pass: every sample's memory term (and, with ``prototypes``, its distance
        ``1 - cos`` to the nearest k-means centroid of the representatives), NaN where
        nothing was written yet, and diagnostics.

        The centroids are the approximate search's cells (:class:`IvfSearch`), trained on the
        written representatives with the same cadence and seed, whichever search runs.

        Args:
            labels: optional labels for the kNN label-agreement diagnostic (never in scores).
            prototypes: also compute the prototype distances.
        """
        memory = torch.full(
            (len(self.written),), float("nan"), dtype=torch.float32, device=self.device
        )
        columns = {"memory": memory}
        if prototypes:
            columns["prototype_distance"] = memory.clone()
        rows = self.written.nonzero().squeeze(1)
        k = min(self.k, len(rows) - 1)
        if k < 1:
            return columns, {}
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
        if prototypes:
            if method != "ivf":  # the search trained no cells this pass
                self.ivf.fit(representatives)
            similarity = self.ivf.nearest_centroid_similarity(representatives)
            distance = (1.0 - similarity).to(self.device)
            columns["prototype_distance"][rows] = distance
            stats["prototype_distance_mean"] = float(distance.mean())
            stats["prototype_cells"] = self.ivf.cells_for(len(rows))
        if labels is not None:
            own = labels.to(rows.device)[rows]
            neighbour_labels = own[neighbours.to(rows.device)]
            stats["bank_knn_label_agreement"] = float(
                (neighbour_labels == own[:, None]).float().mean()
            )
        return columns, stats

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
        state: dict[str, Any] = {
            "layout": self.layout,
            "written": self.written,
            "ivf": self.ivf.state_dict(),
        }
        if self.views is not None:
            state["views"] = self.views
        else:
            state.update(
                representatives=self.representatives,
                positives=self.positives,
                last_mean_view=self.last_mean_view,
                mean_view_set=self.mean_view_set,
            )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        if "views" not in state and "representatives" not in state:
            raise UserInputError(
                "this checkpoint's memory bank has the older one-view layout (features + "
                "positive); resume it with the ssl_emp version that wrote it, or start a new run"
            )
        layout = state.get("layout", "views")
        if layout != self.layout:
            raise UserInputError(
                f"this checkpoint's memory bank has the {layout} layout, the run asks for "
                f"{self.layout}; resume with memory.bank_layout={layout}"
            )
        if self.views is not None:
            self.views.copy_(state["views"])
        else:
            assert self.representatives is not None and self.positives is not None
            assert self.last_mean_view is not None
            self.representatives.copy_(state["representatives"])
            self.positives.copy_(state["positives"])
            self.last_mean_view.copy_(state["last_mean_view"])
            self.mean_view_set = bool(state["mean_view_set"])
        self.written.copy_(state["written"])
        if "ivf" in state:
            self.ivf.load_state_dict(state["ivf"])
