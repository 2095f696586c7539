"""Memory terms (docs/design.md, 2.2): how far the model is from having memorised each sample.

All three are entropies of a softmax over candidates, scaled to [0, 1] by the log of the number
of candidates (``normalize="log"``) or left in nats (``normalize="none"``):

- supervised: entropy of the class prediction, ``H(softmax(logits)) / log(C)``;
- SSL batch estimator: InfoNCE as a (2B-1)-way classifier on (centred, L2-normalised) backbone
  features; the entropy of each view's prediction over the other 2B-1 views, averaged over the
  sample's two views, ``/ log(2B-1)``;
- SSL bank estimator (:class:`BankMemory`): the same entropy with the sample's positive and its
  k nearest neighbours in a bank of every sample's latest feature, ``/ log(k+1)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ssl_emp.numerics import full_precision


def softmax_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of ``softmax(logits)`` along the last dim; ``-inf`` logits are excluded."""
    probabilities = torch.softmax(logits.float(), dim=-1)
    entropy: torch.Tensor = -torch.special.xlogy(probabilities, probabilities).sum(dim=-1)
    return entropy


def scale_entropy(entropy: torch.Tensor, candidates: int, normalize: str) -> torch.Tensor:
    """Divide by log(candidates) for ``normalize="log"`` (0 when there is one candidate)."""
    if normalize == "none":
        return entropy
    if candidates <= 1:
        return torch.zeros_like(entropy)
    return entropy / math.log(candidates)


@full_precision
def supervised_memory(logits: torch.Tensor, normalize: str = "log") -> torch.Tensor:
    """``H(softmax(logits_i)) / log(C)`` per sample.

    Shape:
        logits: (B, C); returns (B,).

    Example:
        A uniform prediction has not memorised anything (1); a confident one has (~0):

        >>> supervised_memory(torch.tensor([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]])).round(decimals=3)
        tensor([1.0000, 0.0010])
    """
    return scale_entropy(softmax_entropy(logits), logits.shape[-1], normalize)


def center_and_normalize(features: torch.Tensor, center: bool) -> torch.Tensor:
    """Subtract the mean row (optional) and L2-normalise the rows, in float32."""
    features = features.float()
    if center:
        features = features - features.mean(dim=0, keepdim=True)
    return F.normalize(features, dim=-1)


@full_precision
def batch_memory(
    features: torch.Tensor, tau: float, center: bool = True, normalize: str = "log"
) -> torch.Tensor:
    """SSL batch estimator over two views' features, shape (2, B, D) -> (B,).

    Each of the 2B views is an anchor whose candidates are exactly the InfoNCE candidates (the
    other 2B-1 views); ``p = softmax(cos(h_anchor, c) / tau)``. Centring first removes the
    common component that post-ReLU features share (without it the term is ~constant).

    Shape:
        features: (2, B, D) -> (B,).

    Example:
        Features that do not tell samples apart (all rows equal) give the uniform softmax
        over the 2B-1 candidates, the largest memory term:

        >>> batch_memory(torch.ones(2, 3, 4), tau=0.1)
        tensor([1., 1., 1.])
    """
    views, batch = features.shape[0], features.shape[1]
    flat = center_and_normalize(features.reshape(views * batch, -1), center)
    logits = flat @ flat.T / tau
    logits.fill_diagonal_(float("-inf"))
    entropy = softmax_entropy(logits).view(views, batch).mean(dim=0)
    return scale_entropy(entropy, views * batch - 1, normalize)
