"""k-nearest-neighbour search by inner product: faiss when installed, torch otherwise.

faiss uses a GPU index when the features are on CUDA and faiss-gpu is installed, else the CPU
``IndexFlatIP``. Both paths are exact searches, so results do not depend on which is used
(up to ties between equal similarities).
"""

from __future__ import annotations

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
