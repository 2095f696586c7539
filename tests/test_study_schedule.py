"""tools/study.py: how the runs of a setting are shared between two shards."""

from __future__ import annotations

import sys

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import study  # noqa: E402


def test_each_shard_trains_its_share_of_the_matched_policies_first() -> None:
    """supervised_budget plans random, EMP and InfoBatch, seeds 0-4; random is later trained
    at InfoBatch's effective rate, which needs all five InfoBatch runs. In plan order shard 0
    would reach its first InfoBatch run after 5 other runs; moved to the front, each shard's
    first runs are its InfoBatch runs, and the two shards still share every run."""
    setting = study.settings([0, 1, 2, 3, 4], [0, 1], list(study.RULES))["supervised_budget"]
    runs = study.dependencies_first(setting["runs"], setting["match_random"])
    shard0, shard1 = [run.name for run in runs[0::2]], [run.name for run in runs[1::2]]
    assert shard0[:3] == ["infobatch_r0.7_s0", "infobatch_r0.7_s2", "infobatch_r0.7_s4"]
    assert shard1[:2] == ["infobatch_r0.7_s1", "infobatch_r0.7_s3"]
    assert sorted(shard0 + shard1) == sorted(run.name for run in setting["runs"])


def test_settings_without_matched_policies_keep_their_plan_order() -> None:
    setting = study.settings([0, 1], [0, 1], list(study.RULES))["headline"]
    runs = study.dependencies_first(setting["runs"], setting.get("match_random", []))
    assert runs == setting["runs"]
