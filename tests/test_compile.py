"""``train.compile``: the backbone compiled in place gives the eager numbers within float
tolerance and keeps every state-dict key (checkpoints and exports unchanged)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ssl_emp.data import GlobalBatch
from ssl_emp.experiments.train import build_trainer
from tests.conftest import tiny_config_with


@pytest.mark.slow
def test_a_compiled_step_gives_the_eager_losses(tmp_path: Path) -> None:
    trainers = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        config = tiny_config_with(tmp_path / str(compiled), f"train.compile={compiled}")
        trainers[compiled] = build_trainer(config)
    eager, compiled = trainers[False], trainers[True]
    assert compiled.model.state_dict().keys() == eager.model.state_dict().keys()
    compiled.model.load_state_dict(eager.model.state_dict())
    batch = GlobalBatch.single(torch.arange(16))
    losses = {}
    for name, trainer in trainers.items():
        torch.manual_seed(1)  # the same views
        outcome = trainer.train_step(batch, progress=0.5)
        assert outcome is not None
        losses[name] = outcome.losses
    assert torch.allclose(losses[True], losses[False], rtol=1e-4, atol=1e-4)
    assert not torch.equal(losses[False], torch.zeros(16))
    assert type(compiled.model.backbone.body._compiled_call_impl).__name__ != "NoneType"
