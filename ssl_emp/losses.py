"""Per-sample contrastive losses (DESIGN 3.1).

Every loss returns one value per sample (``reduction="none"``); the trainer or the pruner
turns those into the scalar to backpropagate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent_per_sample(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent loss, one value per sample.

    Anchor ``a_i`` is classified against the other 2B-1 views with ``b_i`` as the positive,
    and symmetrically for ``b_i``; the sample's loss is the mean of the two cross-entropies.
    The batch mean equals ``lightly.loss.NTXentLoss(temperature)(z_a, z_b)``.

    Args:
        z_a: projections of the first views, shape (B, D); normalised here.
        z_b: projections of the second views, shape (B, D).
        temperature: softmax temperature tau.

    Returns:
        Tensor of shape (B,): ``(CE(a_i) + CE(b_i)) / 2``.
    """
    batch = z_a.shape[0]
    z = F.normalize(torch.cat([z_a, z_b]).float(), dim=1)
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    index = torch.arange(batch, device=z.device)
    targets = torch.cat([index + batch, index])
    per_view = F.cross_entropy(logits, targets, reduction="none")
    return (per_view[:batch] + per_view[batch:]) / 2
