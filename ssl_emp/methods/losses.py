"""Per-sample contrastive losses (docs/design.md, 2.1).

Every loss returns one value per sample (``reduction="none"``); the trainer or the pruner
turns those into the scalar to backpropagate. They become pruning scores, so they are computed
in float32 even inside an autocast region (:func:`~ssl_emp.numerics.full_precision`).
"""

from __future__ import annotations

import math  # noqa: F401 - used by the doctests
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ssl_emp.numerics import full_precision


@full_precision
def nt_xent_per_view(
    z_a: torch.Tensor,
    z_b: torch.Tensor,
    temperature: float,
    all_a: torch.Tensor | None = None,
    all_b: torch.Tensor | None = None,
    offset: int = 0,
) -> torch.Tensor:
    """SimCLR's NT-Xent loss of each view as the anchor: row 0 is ``CE(a_i)`` (anchor a_i
    against the other 2N-1 views, b_i the positive), row 1 is ``CE(b_i)``.

    Args:
        z_a: projections of the first views, shape (B, D); normalised here.
        z_b: projections of the second views, shape (B, D).
        temperature: softmax temperature tau.
        all_a: under DDP, the first views of the global batch (N, D), this rank's rows at
            ``offset``; None means the batch is all there is (N = B).
        all_b: the second views of the global batch, like ``all_a``.
        offset: index of this rank's first sample in ``all_a`` / ``all_b``.

    Shape:
        z_a, z_b: (B, D); all_a, all_b: (N, D); returns (2, B).
    """
    batch = z_a.shape[0]
    anchors = F.normalize(torch.cat([z_a, z_b]).float(), dim=1)
    if all_a is None or all_b is None:
        candidates, total = anchors, batch
    else:
        candidates = F.normalize(torch.cat([all_a, all_b]).float(), dim=1)
        total = all_a.shape[0]
    # logits[r, c]: anchor r (a_0..a_{B-1}, then b_0..b_{B-1}) against candidate c of the
    # global 2N views (a-views 0..N-1, then b-views N..2N-1), shape (2B, 2N)
    logits = anchors @ candidates.T / temperature
    # under DDP this rank's samples sit at rows offset..offset+B-1 of the global batch, so an
    # anchor's own column and its positive's column are shifted by the offset
    index = torch.arange(batch, device=anchors.device) + offset
    own = torch.cat([index, index + total])  # each anchor's own column
    positive = torch.cat([index + total, index])  # a_i's positive is b_i, and vice versa
    rows = torch.arange(2 * batch, device=anchors.device)
    logits[rows, own] = float("-inf")
    return F.cross_entropy(logits, positive, reduction="none").view(2, batch)


def nt_xent_per_sample(
    z_a: torch.Tensor,
    z_b: torch.Tensor,
    temperature: float,
    all_a: torch.Tensor | None = None,
    all_b: torch.Tensor | None = None,
    offset: int = 0,
) -> torch.Tensor:
    """SimCLR's NT-Xent loss, one value per sample.

    Anchor ``a_i`` is classified against the other 2N-1 views with ``b_i`` as the positive,
    and symmetrically for ``b_i``; the sample's loss is the mean of the two cross-entropies
    (:func:`nt_xent_per_view`). The batch mean equals
    ``lightly.loss.NTXentLoss(temperature)(z_a, z_b)``.

    Args:
        z_a: projections of the first views, shape (B, D); normalised here.
        z_b: projections of the second views, shape (B, D).
        temperature: softmax temperature tau.
        all_a: under DDP, the first views of the global batch (N, D), this rank's rows at
            ``offset``; None means the batch is all there is (N = B).
        all_b: the second views of the global batch, like ``all_a``.
        offset: index of this rank's first sample in ``all_a`` / ``all_b``.

    Returns:
        Tensor of shape (B,): ``(CE(a_i) + CE(b_i)) / 2``.

    Shape:
        z_a, z_b: (B, D); all_a, all_b: (N, D); returns (B,).

    Example:
        Two orthogonal samples whose views agree: each anchor sees its positive at cosine 1
        and two negatives at cosine 0, so with tau = 1 its loss is ``log(1 + 2 / e)``.

        >>> z = torch.eye(2)
        >>> nt_xent_per_sample(z, z, temperature=1.0)
        tensor([0.5514, 0.5514])
        >>> round(math.log(1 + 2 / math.e), 4)
        0.5514
    """
    per_view = nt_xent_per_view(z_a, z_b, temperature, all_a, all_b, offset)
    return (per_view[0] + per_view[1]) / 2


@full_precision
def info_nce_per_sample(
    queries: torch.Tensor, keys: torch.Tensor, negatives: torch.Tensor, temperature: float
) -> torch.Tensor:
    """MoCo's InfoNCE, one value per sample: ``CE([q.k+, q.Queue] / tau, 0)``.

    Args:
        queries: online-encoder projections q, shape (B, D); normalised here.
        keys: momentum-encoder projections k (the positives), shape (B, D); normalised here.
        negatives: queued keys, shape (M, D), already normalised (M may be 0).
        temperature: softmax temperature tau.

    Returns:
        Tensor of shape (B,).

    Shape:
        queries, keys: (B, D); negatives: (M, D); returns (B,).

    Example:
        A query equal to its key and orthogonal to the one queued key, tau = 1:
        ``CE([1, 0], 0) = log(1 + 1 / e)``.

        >>> one = torch.tensor([[1.0, 0.0]])
        >>> info_nce_per_sample(one, one, torch.tensor([[0.0, 1.0]]), temperature=1.0)
        tensor([0.3133])
    """
    q = F.normalize(queries.float(), dim=1)
    k = F.normalize(keys.float(), dim=1)
    positive = (q * k).sum(dim=1, keepdim=True)
    negative = q @ negatives.float().T
    logits = torch.cat([positive, negative], dim=1) / temperature
    targets = torch.zeros(len(q), dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, targets, reduction="none")


@full_precision
def cross_entropy_per_sample(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Supervised per-sample loss ``CE(logits_i, y_i)``.

    Shape:
        logits: (B, C); labels: (B,); returns (B,).

    Example:
        Uniform logits over four classes cost ``log 4`` whatever the label:

        >>> cross_entropy_per_sample(torch.zeros(2, 4), torch.tensor([0, 3]))
        tensor([1.3863, 1.3863])
    """
    return F.cross_entropy(logits.float(), labels, reduction="none")


@full_precision
def negative_cosine_per_sample(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """BYOL's and SimSiam's loss, one value per sample: ``-cos(p_i, z_i)``; the batch mean
    equals ``lightly.loss.NegativeCosineSimilarity()(p, z)``. The targets carry no gradient
    where the method stops it (the caller detaches them).

    Shape:
        predictions, targets: (B, D); returns (B,).

    Example:
        A prediction along its target costs -1, an orthogonal one 0:

        >>> negative_cosine_per_sample(torch.eye(2), torch.tensor([[2.0, 0.0], [1.0, 0.0]]))
        tensor([-1., -0.])
    """
    return -F.cosine_similarity(predictions.float(), targets.float(), dim=1)


def symmetric_per_sample(
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    first: tuple[torch.Tensor, torch.Tensor],
    second: tuple[torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    """The two view orders of a two-term loss, per sample: row 0 is ``loss(*first)``, row 1
    ``loss(*second)``; their mean over the rows is the sample's loss (the lightly examples'
    ``0.5 * (criterion(p0, z1) + criterion(p1, z0))``), each row is a view order's loss.

    Shape:
        each tensor: (B, D); returns (2, B).
    """
    return torch.stack([loss(*first), loss(*second)])
