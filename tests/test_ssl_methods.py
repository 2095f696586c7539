"""BYOL, SimSiam and NNCLR: per-sample losses against lightly's, their momentum target and
support set, exact resume, skipped steps, two processes, and an export torchvision loads."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from lightly.loss import NegativeCosineSimilarity, NTXentLoss

from ssl_emp.data import GlobalBatch
from ssl_emp.experiments.export import export_run
from ssl_emp.experiments.train import build_trainer, pretrain
from ssl_emp.methods import MethodOutput
from ssl_emp.methods.losses import negative_cosine_per_sample
from ssl_emp.methods.nnclr import nearest_neighbours
from tests.conftest import metrics_records, tiny_config_with

METHODS = {
    "byol": ["method.name=byol", "augment.preset=byol"],
    "simsiam": ["method.name=simsiam", "augment.preset=mocov2"],
    "nnclr": ["method.name=nnclr", "method.support_size=24"],
}


@pytest.mark.parametrize("batch", [2, 9, 64])
def test_negative_cosine_mean_equals_lightly(batch: int) -> None:
    generator = torch.Generator().manual_seed(batch)
    p, z = torch.randn(2, batch, 12, generator=generator)
    ours = negative_cosine_per_sample(p, z)
    assert ours.shape == (batch,)
    assert torch.allclose(ours.mean(), NegativeCosineSimilarity()(p, z), atol=1e-6)


def _views_and_output(trainer, seed: int = 3):
    """The method's output on 16 images, and the same two views drawn again."""
    model = trainer.model
    images = trainer.data.images[:16]
    torch.manual_seed(seed)
    output = model(images)
    torch.manual_seed(seed)
    view_a, view_b = model.augmentation.two_views(images)
    return model, output, torch.cat([view_a, view_b])


def test_byol_loss_is_lightlys_on_the_same_views(tmp_path: Path) -> None:
    trainer = build_trainer(tiny_config_with(tmp_path, *METHODS["byol"]))
    model, output, views = _views_and_output(trainer)
    with torch.no_grad():
        p0, p1 = model.prediction_head(model.projection_head(model.backbone(views))).chunk(2)
        t0, t1 = model.target_projection_head(model.target_backbone(views)).chunk(2)
        criterion = NegativeCosineSimilarity()
        expected = 0.5 * (criterion(p0, t1) + criterion(p1, t0))
    assert torch.allclose(output.loss.mean(), expected, atol=1e-5)
    assert torch.allclose(output.view_losses.mean(dim=0), output.loss.detach(), atol=1e-6)
    assert output.features.shape == (2, 16, model.backbone.feature_dim)


def test_simsiam_loss_is_lightlys_with_stopped_gradients(tmp_path: Path) -> None:
    trainer = build_trainer(tiny_config_with(tmp_path, *METHODS["simsiam"]))
    model, output, views = _views_and_output(trainer)
    with torch.no_grad():
        z = model.projection_head(model.backbone(views))
        p0, p1 = model.prediction_head(z).chunk(2)
        z0, z1 = z.chunk(2)
        criterion = NegativeCosineSimilarity()
        expected = 0.5 * (criterion(p0, z1) + criterion(p1, z0))
    assert torch.allclose(output.loss.mean(), expected, atol=1e-5)
    # the stop-gradient: the projection head's gradient is lightly's with z detached
    head = model.projection_head.layers[0].weight
    output.loss.mean().backward()
    ours = head.grad.clone()
    head.grad = None
    z = model.projection_head(model.backbone(views))
    p0, p1 = model.prediction_head(z).chunk(2)
    z0, z1 = z.detach().chunk(2)
    (0.5 * (criterion(p0, z1) + criterion(p1, z0))).backward()
    assert torch.allclose(ours, head.grad, atol=1e-6)


def test_nnclr_loss_is_lightlys_with_the_nearest_support_projections(tmp_path: Path) -> None:
    trainer = build_trainer(tiny_config_with(tmp_path, *METHODS["nnclr"]))
    model = trainer.model
    support = F.normalize(torch.randn(24, 16, generator=torch.Generator().manual_seed(1)), dim=1)
    model.support.enqueue(support)
    _, output, views = _views_and_output(trainer)
    with torch.no_grad():
        z = model.projection_head(model.backbone(views))
        p0, p1 = model.prediction_head(z).chunk(2)

        def by_hand(queries: torch.Tensor) -> torch.Tensor:  # argmax of the cosines, a loop
            rows = []
            for query in queries:
                cosines = [float(F.cosine_similarity(query, row, dim=0)) for row in support]
                rows.append(support[int(np.argmax(cosines))])
            return torch.stack(rows)

        z0, z1 = z.chunk(2)
        criterion = NTXentLoss(temperature=0.1)
        expected = 0.5 * (criterion(by_hand(z0), p1) + criterion(by_hand(z1), p0))
    assert torch.allclose(output.loss.mean(), expected, atol=1e-5)


def test_nearest_neighbours_of_an_empty_support_set_are_the_queries() -> None:
    queries = torch.randn(3, 4)
    assert torch.equal(nearest_neighbours(queries, torch.zeros(0, 4)), queries)


def test_nnclr_support_set_takes_the_first_views_after_an_accepted_step(tmp_path: Path) -> None:
    trainer = build_trainer(tiny_config_with(tmp_path, *METHODS["nnclr"]))
    model = trainer.model
    assert int(model.support.filled) == 0
    outcome = trainer.train_step(GlobalBatch.single(torch.arange(16)), progress=0.5)
    assert outcome is not None and int(model.support.filled) == 16
    z_a = outcome.output.projections[0]
    assert torch.allclose(model.support.negatives(), F.normalize(z_a, dim=1), atol=1e-6)
    assert "support.keys" in model.state_dict()  # checkpoints carry it


def test_byol_target_follows_the_online_network_by_its_momentum(tmp_path: Path) -> None:
    trainer = build_trainer(tiny_config_with(tmp_path, *METHODS["byol"], "method.momentum=0.9"))
    model = trainer.model
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert not any(id(p) in optimised for p in model.target_backbone.parameters())
    with torch.no_grad():
        for parameter in model.projection_head.parameters():
            parameter.add_(torch.randn_like(parameter))
    online = [p.clone() for p in model.projection_head.parameters()]
    before = [p.clone() for p in model.target_projection_head.parameters()]
    model.before_step(progress=0.0, epochs=2)
    model.commit_step()
    after = list(model.target_projection_head.parameters())
    for target, old, new in zip(after, before, online, strict=True):
        assert torch.allclose(target, 0.9 * old + 0.1 * new, atol=1e-6)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_skipped_step_changes_no_state(tmp_path: Path, method: str) -> None:
    trainer = build_trainer(tiny_config_with(tmp_path, *METHODS[method], "train.on_nonfinite=skip"))
    model = trainer.model
    batch = GlobalBatch.single(torch.arange(16))
    assert trainer.train_step(batch, progress=0.5) is not None
    before = {name: value.clone() for name, value in model.state_dict().items()}
    forward = model.forward

    def poisoned(images: torch.Tensor, labels: torch.Tensor) -> MethodOutput:
        output = forward(images, labels)
        output.loss = output.loss * float("nan")
        return output

    model.forward = poisoned
    assert trainer.train_step(batch, progress=0.6) is None
    after = model.state_dict()
    assert [name for name in before if not torch.equal(before[name], after[name])] == []


@pytest.mark.parametrize("method", sorted(METHODS))
def test_resume_is_bit_identical(tmp_path: Path, method: str) -> None:
    overrides = [*METHODS[method], "pruning.policy=emp", "pruning.rate=0.5", "train.epochs=3",
                 "train.batch_size=8"]  # fmt: skip
    straight = pretrain(tiny_config_with(tmp_path / "a", *overrides))
    first = build_trainer(tiny_config_with(tmp_path / "b", *overrides))
    first.fit(until_epoch=2)
    resumed = build_trainer(tiny_config_with(tmp_path / "b", *overrides, "run.resume=true"))
    resumed.fit()
    timing = {"wall_time_s", "images_per_s"}
    records = [
        [{k: v for k, v in record.items() if k not in timing} for record in metrics_records(path)]
        for path in (straight.path, resumed.run.path)
    ]
    assert records[0] == records[1]
    for key in ("score", "memory", "train_count"):
        a, b = np.load(straight.scores_path)[key], np.load(resumed.run.scores_path)[key]
        assert np.array_equal(a, b), key


@pytest.mark.parametrize("method", sorted(METHODS))
def test_torchvision_loads_the_export_strictly(tmp_path: Path, method: str) -> None:
    config = tiny_config_with(
        tmp_path, *METHODS[method], "model.backbone=resnet18", "model.cifar_stem=false",
        "train.epochs=1",
    )  # fmt: skip
    build_trainer(config).fit()
    export_run(config.run.dir, str(tmp_path / "encoder.pt"))
    model = torchvision.models.resnet18()
    model.fc = torch.nn.Identity()
    model.load_state_dict(torch.load(tmp_path / "encoder.pt"), strict=True)
    with_head = tmp_path / "with_head.pt"
    export_run(config.run.dir, str(with_head), head=True)
    import ssl_emp

    assert ssl_emp.load_backbone(with_head, head=True)(torch.zeros(2, 3, 32, 32)).shape[0] == 2
