"""Naming the variants that ``ssl-emp compare`` groups runs into.

Two runs belong to one variant (and their seeds are pooled) exactly when every setting that can
change their training or evaluation is equal, seed and nominal rate aside. The label is the
policy, for EMP its memory estimator, then every such setting in which the run differs from
the most common value among the compared runs (``emp (batch, beta 3)``, ``full (epochs 7)``):
the usual case stays short and no two settings are ever pooled. A setting a run's policy does
not read (``pruning.beta`` of a random run, ``memory.*`` of a loss-ranked run) does not split
variants.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from ssl_emp.config import Config
from ssl_emp.pruning import POLICIES
from ssl_emp.pruning.options import direction, score_kind
from ssl_emp.pruning.scores import SCORES

# keys that change neither training nor evaluation, or that the table has columns for
NEUTRAL_KEYS = {
    "seed",
    "pruning.policy",
    "pruning.rate",
    "eval.knn_every",
    "train.progress",
    "train.progress_interval_s",
    "train.threads",
    "train.device",
    "data.workers",
}
NEUTRAL_SECTIONS = ("run.", "logging.")


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested dict as ``{"section.key": value}``."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix=f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def relevant_settings(config: Config) -> dict[str, Any]:
    """The dotted settings that can change what this run trains or how it is evaluated."""
    policy = POLICIES[config.pruning.policy]
    kind = score_kind(config.pruning)
    score = SCORES[kind]
    pruning_keys: set[str] = set()
    if not policy.always_full:
        pruning_keys |= {"warmup_epochs", "anneal", *policy.options}
    if policy.reads_score:
        pruning_keys |= {"score", *score.options}
    if policy.ranks_scores:
        pruning_keys.add("direction")
    if policy.ranks_history:
        pruning_keys.add("ema")
    settings = {}
    for key, value in flatten(config.to_dict()).items():
        if key in NEUTRAL_KEYS or key.startswith(NEUTRAL_SECTIONS):
            continue
        section, name = key.split(".", 1) if "." in key else ("", key)
        if section == "pruning":
            if name not in pruning_keys:
                continue
            if name == "score":
                value = kind  # None and the policy's default are the same setting
            if name == "direction":
                value = direction(config.pruning)
        if section == "memory" and not (policy.reads_score and score.reads_memory_settings):
            continue
        settings[key] = value
    return settings


def _render(key: str, value: Any) -> str:
    """``beta 3``, ``epochs 7``, ``projection`` (a layer), ``method simclr``."""
    section, _, name = key.rpartition(".")
    if name in ("layer", "direction", "score"):
        return str(value)
    if name == "name":
        name = section.rsplit(".", 1)[-1]
    return f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}"


def variant_labels(configs: Mapping[str, Config]) -> dict[str, str]:
    """The variant label of each run (keyed like ``configs``)."""
    settings = {key: relevant_settings(config) for key, config in configs.items()}
    values: dict[str, Counter] = {}
    for found in settings.values():
        for key, value in found.items():
            values.setdefault(key, Counter())[repr(value)] += 1
    # the most common value of each setting is the reference (ties: the first seen)
    reference = {key: counts.most_common(1)[0][0] for key, counts in values.items()}
    labels = {}
    for run, config in configs.items():
        kind = score_kind(config.pruning)
        details: list[str] = []
        if SCORES[kind].memory_term:
            # supervised runs ignore memory.estimator: their term is the prediction entropy
            supervised = config.method.name == "supervised"
            details.append("prediction" if supervised else config.memory.estimator)
        policy = POLICIES[config.pruning.policy]
        own_defaults = {
            "pruning.score": policy.default_score,
            "pruning.direction": policy.default_direction,
        }
        for key, value in settings[run].items():
            if key in own_defaults:  # named where it is not the policy's own choice
                if value != own_defaults[key]:
                    details.append(_render(key, value))
                continue
            # the estimator is in an EMP label already, and a bank score needs the bank
            implied = SCORES[kind].memory_term or SCORES[kind].needs_bank
            if repr(value) == reference[key] or (implied and key == "memory.estimator"):
                continue
            details.append(_render(key, value))
        label = config.pruning.policy
        labels[run] = f"{label} ({', '.join(details)})" if details else label
    return labels
