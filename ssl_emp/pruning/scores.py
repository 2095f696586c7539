"""What a policy ranks (``pruning.score``), by name: one registry, like the policies.

A score turns the score table into one value per sample (``+inf`` = never seen, so it ranks
first). Which end of the ranking is kept is the policy's direction (:func:`orient`), not the
score's: "keep the most prototypical" is the prototypicality score with ``direction=easy``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, get_args

import numpy as np

from ssl_emp.config.schema import Direction, ScoreKind
from ssl_emp.pruning.score_table import ScoreTable, combine_scores

if TYPE_CHECKING:
    from ssl_emp.config import PruningConfig


@dataclass(frozen=True)
class ScoreInputs:
    """What a score may read.

    Attributes:
        loss: the latest loss of every sample (or, for UCB, the upper confidence bound of
            its loss history), float64, ``+inf`` = unseen.
        table: the score table (memory term, prototype distances).
        config: the ``pruning`` section (beta, combine).
    """

    loss: np.ndarray
    table: ScoreTable
    config: PruningConfig


def _loss(inputs: ScoreInputs) -> np.ndarray:
    return inputs.loss


def _emp(inputs: ScoreInputs) -> np.ndarray:
    memory = inputs.table.memory.double().cpu().numpy()
    return combine_scores(inputs.loss, memory, inputs.config.beta, inputs.config.combine)


def _prototypicality(inputs: ScoreInputs) -> np.ndarray:
    # a sample the bank has not scored yet (NaN) is treated as unseen: it ranks first
    distance = inputs.table.prototype_distance.double().cpu().numpy()
    return np.where(np.isnan(distance), np.inf, distance)


@dataclass(frozen=True)
class Score:
    """A named score.

    Attributes:
        name: the ``pruning.score`` value.
        compute: the score of every sample from the table.
        memory_term: the memory term enters it (EMP).
        needs_bank: it reads the feature bank (``memory.estimator=bank``).
        options: the ``pruning`` keys it reads besides the policy's own.
    """

    name: str
    compute: Callable[[ScoreInputs], np.ndarray]
    memory_term: bool = False
    needs_bank: bool = False
    options: tuple[str, ...] = ()

    @property
    def reads_memory_settings(self) -> bool:
        """Whether ``memory.*`` settings change the ranking (the memory term or the bank)."""
        return self.memory_term or self.needs_bank


SCORES: dict[str, Score] = {
    score.name: score
    for score in (
        Score("loss", _loss),
        Score("emp", _emp, memory_term=True, options=("beta", "combine")),
        # the distance of the sample's bank representative to its nearest k-means centroid
        # (Sorscher et al., NeurIPS 2022): small = prototypical, large = atypical
        Score("prototypicality", _prototypicality, needs_bank=True),
    )
}
if tuple(SCORES) != get_args(ScoreKind):  # one list of names: the config's ScoreKind
    raise ImportError(f"score registry {tuple(SCORES)} != config {get_args(ScoreKind)}")


def orient(scores: np.ndarray, direction: Direction | str) -> np.ndarray:
    """Scores such that the highest is kept first: as they are for ``hard``, negated for
    ``easy`` (lowest first). Unseen samples (``+inf``) stay first either way, so every
    sample is trained once before it can be left out; the map is its own inverse.

    Example:
        >>> orient(np.array([0.5, 2.0, np.inf]), "easy").tolist()
        [-0.5, -2.0, inf]
    """
    if direction == "hard":
        return scores
    return np.where(np.isposinf(scores), np.inf, -scores)


if get_args(Direction) != ("hard", "easy"):  # orient knows these two
    raise ImportError(f"orient() does not know the directions {get_args(Direction)}")
