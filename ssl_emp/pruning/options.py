"""What the ``pruning`` keys resolve to (the score ranked, the end kept) and the combinations
of them that no rule can honour, checked before anything trains."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ssl_emp.errors import UserInputError
from ssl_emp.pruning.policies import POLICIES
from ssl_emp.pruning.scores import SCORES

if TYPE_CHECKING:
    from ssl_emp.config import PruningConfig


def score_kind(config: PruningConfig) -> str:
    """What ``config`` ranks: ``pruning.score``, else the policy's default."""
    return config.score or POLICIES[config.policy].default_score


def direction(config: PruningConfig) -> str:
    """Which end ``config`` keeps: ``pruning.direction``, else the policy's default."""
    return config.direction or POLICIES[config.policy].default_direction


def check_pruning_options(config: PruningConfig) -> None:
    """Refuse combinations of the ``pruning`` keys that no rule can honour, in one line each.

    Raises:
        UserInputError: a rate above the policy's limit, a direction for a policy that ranks
            nothing, or a score the policy cannot rank.
    """
    policy = POLICIES[config.policy]
    limit = policy.max_rate
    if limit is not None and config.rate > limit[0]:
        raise UserInputError(
            f"pruning.rate={config.rate} is too high for {config.policy}: {limit[1]}; use "
            f"pruning.rate<={limit[0]}"
        )
    ranking = ", ".join(name for name, other in POLICIES.items() if other.ranks_scores)
    if direction(config) != policy.default_direction and not policy.ranks_scores:
        raise UserInputError(
            f"pruning.direction={config.direction} applies to the policies that keep one end "
            f"of a score ranking ({ranking}), not {config.policy}; drop pruning.direction"
        )
    kind = score_kind(config)
    if SCORES[kind].needs_bank and not policy.ranks_scores:
        raise UserInputError(
            f"pruning.score={kind} is ranked by {ranking}, not {config.policy}; choose one of "
            "those policies"
        )
    if policy.needs_view_losses and kind != "loss":
        raise UserInputError(
            f"pruning.policy={config.policy} ranks the per-sample loss of each view order; "
            f"drop pruning.score={kind}"
        )
