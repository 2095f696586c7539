"""k-nearest-neighbour search by inner product: faiss when installed, torch otherwise.

:func:`search` and :class:`FaissSearch` are exact: faiss uses a GPU index when the features
are on CUDA and faiss-gpu is installed, else the CPU ``IndexFlatIP``, so results do not depend
on which is used (up to ties between equal similarities). Their cost is N x Q x D.

:class:`IvfSearch` is approximate: faiss's inverted-file index splits the database into cells
by k-means and each query scans only its nearest cells, so searching every row of a database
of N rows costs about N x (cells + probe x cell_size) x D instead of N^2 x D; with many cells
they are trained and chosen in two levels, so the ``cells`` term becomes about
2 x sqrt(cells).
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np
import torch

faiss: ModuleType | None
try:  # faiss is optional: the torch path gives the same answers
    import faiss
except ImportError:  # pragma: no cover - exercised only where faiss is absent
    faiss = None


MAX_GPU_K = 2048  # faiss-gpu's largest k (and nprobe)


def faiss_available() -> bool:
    """Whether faiss can be imported."""
    return faiss is not None


class FaissSearch:
    """Exact inner-product search with faiss; on CUDA data with faiss-gpu, a GPU index whose
    resources (streams, scratch memory) are created once per object and reused by every
    search, since creating them costs more than a search of a small bank."""

    def __init__(self) -> None:
        self._gpu_resources: Any = None

    def _gpu(self) -> Any:
        if self._gpu_resources is None:
            assert faiss is not None
            self._gpu_resources = faiss.StandardGpuResources()
        return self._gpu_resources

    def search(
        self, database: torch.Tensor, queries: torch.Tensor, k: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``k`` largest inner products of each query with the database rows."""
        assert faiss is not None
        base = np.ascontiguousarray(database.detach().float().cpu().numpy())
        query = np.ascontiguousarray(queries.detach().float().cpu().numpy())
        index: Any = faiss.IndexFlatIP(base.shape[1])
        if database.is_cuda and hasattr(faiss, "StandardGpuResources"):
            if k > MAX_GPU_K:
                raise ValueError(f"faiss-gpu searches at most {MAX_GPU_K} neighbours, not {k}")
            index = faiss.index_cpu_to_gpu(self._gpu(), database.device.index or 0, index)
        index.add(base)
        similarities, indices = index.search(query, k)
        device = queries.device
        return (
            torch.from_numpy(similarities).to(device),
            torch.from_numpy(indices).long().to(device),
        )


def _torch_search(
    database: torch.Tensor, queries: torch.Tensor, k: int, chunk: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    similarities, indices = [], []
    base = database.float()
    for start in range(0, len(queries), chunk):
        scores = queries[start : start + chunk].float() @ base.T
        top = scores.topk(k, dim=1)
        similarities.append(top.values)
        indices.append(top.indices)
    return torch.cat(similarities), torch.cat(indices)


def search(
    database: torch.Tensor,
    queries: torch.Tensor,
    k: int,
    use_faiss: bool = True,
    searcher: FaissSearch | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest inner products of each query with the database rows.

    Args:
        database: (N, D) rows.
        queries: (Q, D) rows.
        k: neighbours per query.
        use_faiss: search with faiss when installed (else torch).
        searcher: a :class:`FaissSearch` to reuse (its GPU resources); a new one otherwise.

    Returns:
        (similarities, indices), each of shape (Q, k), best first.
    """
    if use_faiss and faiss_available():
        return (searcher or FaissSearch()).search(database, queries, k)
    return _torch_search(database, queries, k)


class IvfSearch:
    """Approximate inner-product search with a faiss inverted-file index (``IndexIVFFlat``).

    A spherical k-means splits the database into ``ceil(N / cell_size)`` cells; a query scans
    the ``probe`` cells whose centroids are most similar to it. Probing every cell gives the
    exact answer. The cells are trained on a seeded sample of at most
    ``train_points_per_cell`` rows per cell and reused for ``retrain_every`` searches (the
    bank's features drift as the encoder trains, so they are retrained on the current ones),
    or until the number of cells changes.

    From ``two_level_from`` cells on, both the k-means and the choice of cells would cost
    O(cells) per row, so O(N) per row in all. There the cells are found in two levels: about
    sqrt(cells) groups first, then each group's rows are split into cells (in proportion to
    the group's size), so training costs O(sqrt(cells)) per sample row; and the queries pick
    their cells through an inverted file over the centroids (``group_probe`` of the
    sqrt(cells) groups scanned), so choosing costs O(sqrt(cells)) too instead of O(cells).
    The quantizer is a function of the centroids alone (its groups are a seeded k-means of
    them), so a checkpoint of the centroids restores it exactly.

    Args:
        cell_size: database rows per cell on average.
        probe: cells scanned per query (faiss ``nprobe``).
        retrain_every: searches between retrainings of the cells (1: every search).
        train_points_per_cell: k-means sample size per cell.
        iterations: k-means iterations.
        seed: seed of the k-means samples and initialisations.
        two_level_from: number of cells from which training and cell choice use two levels.
        group_probe: groups of centroids scanned per query to choose its cells (two levels).
    """

    def __init__(
        self,
        cell_size: int = 256,
        probe: int = 8,
        retrain_every: int = 1,
        train_points_per_cell: int = 64,
        iterations: int = 10,
        seed: int = 0,
        two_level_from: int = 1024,
        group_probe: int = 8,
    ) -> None:
        self.cell_size, self.probe, self.retrain_every = cell_size, probe, retrain_every
        self.train_points_per_cell, self.iterations, self.seed = (
            train_points_per_cell,
            iterations,
            seed,
        )
        self.two_level_from, self.group_probe = two_level_from, group_probe
        self.centroids: np.ndarray | None = None  # (cells, D) float32
        self.quantizer: Any = None
        self.searches_since_training = 0
        self.trainings = 0
        self.last_exact_fallbacks = 0
        self._gpu = FaissSearch()

    def cells_for(self, rows: int) -> int:
        """Number of cells for a database of ``rows`` rows."""
        return max(1, math.ceil(rows / self.cell_size))

    def two_level(self, cells: int) -> bool:
        """Whether ``cells`` cells are trained and chosen in two levels."""
        return cells >= self.two_level_from

    def _kmeans(self, points: np.ndarray, clusters: int, seed: int) -> np.ndarray:
        """Seeded spherical k-means centroids, (clusters, D) float32."""
        assert faiss is not None
        kmeans = faiss.Kmeans(
            points.shape[1],
            clusters,
            niter=self.iterations,
            seed=seed,
            spherical=True,
            max_points_per_centroid=self.train_points_per_cell,
            min_points_per_centroid=1,
        )
        kmeans.train(np.ascontiguousarray(points))
        return np.asarray(kmeans.centroids, dtype=np.float32)

    def _two_level_kmeans(self, sample: np.ndarray, cells: int, seed: int) -> np.ndarray:
        """``cells`` centroids: k-means into about sqrt(cells) groups, then each group's rows
        into cells in proportion to its size (at least one cell per non-empty group)."""
        assert faiss is not None
        groups = max(1, round(math.sqrt(cells)))
        group_centroids = self._kmeans(sample, groups, seed)
        index: Any = faiss.IndexFlatIP(sample.shape[1])
        index.add(group_centroids)
        assignment = index.search(sample, 1)[1][:, 0]
        sizes = np.bincount(assignment, minlength=groups)
        present = np.flatnonzero(sizes)
        # one cell per non-empty group, the rest in proportion to the group sizes (largest
        # remainders), so the counts sum to exactly ``cells``
        shares = sizes[present] * (cells - len(present)) / len(sample)
        counts = 1 + np.floor(shares).astype(int)
        left = cells - int(counts.sum())
        counts[np.argsort(-(shares - np.floor(shares)), kind="stable")[:left]] += 1
        parts = []
        for offset, (group, count) in enumerate(zip(present, counts, strict=True)):
            rows = sample[assignment == group]
            count = min(int(count), len(rows))
            parts.append(rows if count == len(rows) else self._kmeans(rows, count, seed + offset))
        centroids = np.concatenate(parts).astype(np.float32)
        if len(centroids) < cells:  # groups smaller than their share: their rows are cells
            centroids = np.concatenate([centroids, centroids[: cells - len(centroids)]])
        return np.ascontiguousarray(centroids[:cells])

    def _build_quantizer(self, centroids: np.ndarray) -> Any:
        """The index that picks each query's cells: flat over the centroids, or (two levels)
        an inverted file over them whose groups are a seeded k-means of the centroids."""
        assert faiss is not None
        dim = centroids.shape[1]
        flat: Any = faiss.IndexFlatIP(dim)
        if not self.two_level(len(centroids)):
            flat.add(centroids)
            return flat
        groups = max(1, round(math.sqrt(len(centroids))))
        flat.add(self._kmeans(centroids, groups, self.seed + 7919))
        quantizer: Any = faiss.IndexIVFFlat(flat, dim, groups, faiss.METRIC_INNER_PRODUCT)
        quantizer.add(centroids)
        quantizer.nprobe = min(self.group_probe, groups)
        return quantizer

    def _train(self, base: np.ndarray, cells: int) -> None:
        sample_size = min(len(base), self.train_points_per_cell * cells)
        generator = np.random.default_rng([self.seed, self.trainings])
        sample = base[np.sort(generator.choice(len(base), sample_size, replace=False))]
        seed = self.seed + self.trainings
        if self.two_level(cells):
            centroids = self._two_level_kmeans(sample, cells, seed)
        else:
            centroids = self._kmeans(sample, cells, seed)
        self.centroids = centroids
        self.quantizer = self._build_quantizer(centroids)
        self.searches_since_training = 0
        self.trainings += 1

    def _fit(self, base: np.ndarray) -> int:
        """Train the cells on ``base`` when there are none, their number changed or they are
        ``retrain_every`` passes old; counts one pass. Returns the number of cells."""
        cells = self.cells_for(len(base))
        stale = self.searches_since_training >= self.retrain_every
        if self.centroids is None or len(self.centroids) != cells or stale:
            self._train(base, cells)
        self.searches_since_training += 1
        return cells

    def fit(self, database: torch.Tensor) -> None:
        """One pass's cells for ``database`` without a search (trained as :meth:`search`
        would train them), for :meth:`nearest_centroid_similarity`."""
        if faiss is None:
            raise ValueError("k-means cells (prototypicality, memory.search=ivf) need faiss")
        self._fit(np.ascontiguousarray(database.detach().float().cpu().numpy()))

    def nearest_centroid_similarity(self, rows: torch.Tensor) -> torch.Tensor:
        """The inner product of each row with its nearest centroid (through the quantizer:
        exact below ``two_level_from`` cells), after :meth:`search` or :meth:`fit`.

        Shape:
            rows: (R, D) -> (R,), on the rows' device.
        """
        if self.quantizer is None:
            raise ValueError("no cells yet: call fit() or search() first")
        base = np.ascontiguousarray(rows.detach().float().cpu().numpy())
        similarities, _ = self.quantizer.search(base, 1)
        return torch.from_numpy(similarities[:, 0]).to(rows.device)

    def search(
        self, database: torch.Tensor, queries: torch.Tensor, k: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The (approximately) ``k`` largest inner products of each query with the database
        rows, best first. The few queries whose probed cells hold fewer than ``k`` rows are
        searched exactly instead."""
        if faiss is None:
            raise ValueError("approximate search (memory.search=ivf) needs faiss; install it")
        base = np.ascontiguousarray(database.detach().float().cpu().numpy())
        query = np.ascontiguousarray(queries.detach().float().cpu().numpy())
        cells = self._fit(base)
        on_gpu = database.is_cuda and hasattr(faiss, "StandardGpuResources")
        quantizer = self.quantizer
        if on_gpu and self.two_level(cells):
            # faiss-gpu copies a flat quantizer only; on a GPU scanning every centroid is cheap
            assert self.centroids is not None
            quantizer = faiss.IndexFlatIP(base.shape[1])
            quantizer.add(self.centroids)
        index: Any = faiss.IndexIVFFlat(quantizer, base.shape[1], cells, faiss.METRIC_INNER_PRODUCT)
        index.nprobe = min(self.probe, cells)
        if on_gpu:
            if max(k, index.nprobe) > MAX_GPU_K:
                raise ValueError(f"faiss-gpu searches at most {MAX_GPU_K} neighbours and cells")
            index = faiss.index_cpu_to_gpu(self._gpu._gpu(), database.device.index or 0, index)
        index.add(base)
        similarities, indices = index.search(query, k)
        short = np.flatnonzero((indices < 0).any(axis=1))
        if len(short):
            exact: Any = faiss.IndexFlatIP(base.shape[1])
            exact.add(base)
            similarities[short], indices[short] = exact.search(query[short], k)
        self.last_exact_fallbacks = len(short)
        device = queries.device
        return (
            torch.from_numpy(similarities).to(device),
            torch.from_numpy(indices).long().to(device),
        )

    def state_dict(self) -> dict[str, Any]:
        """The trained cells and the retraining counters (for an exact resume)."""
        centroids = None if self.centroids is None else torch.from_numpy(self.centroids.copy())
        return {
            "centroids": centroids,
            "searches_since_training": self.searches_since_training,
            "trainings": self.trainings,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.searches_since_training = state["searches_since_training"]
        self.trainings = state["trainings"]
        self.centroids, self.quantizer = None, None
        if state["centroids"] is not None and faiss is not None:
            self.centroids = np.ascontiguousarray(state["centroids"].numpy(), dtype=np.float32)
            self.quantizer = self._build_quantizer(self.centroids)
