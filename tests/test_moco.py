"""MoCo v2: per-sample InfoNCE, the key queue, the momentum update, resume of queue and keys."""

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ssl_emp.data import GlobalBatch
from ssl_emp.engine.checkpoint import list_checkpoints
from ssl_emp.experiments.train import build_trainer, pretrain
from ssl_emp.methods import MethodOutput
from ssl_emp.methods.losses import info_nce_per_sample
from ssl_emp.methods.moco import chunked
from ssl_emp.methods.queue import KeyQueue
from tests.conftest import metrics_records, tiny_config_with

MOCO = ["method.name=moco", "method.queue_size=20", "augment.preset=mocov2", "method.bn_splits=2"]


def test_info_nce_equals_hand_computation() -> None:
    generator = torch.Generator().manual_seed(0)
    q, k = torch.randn(3, 4, generator=generator), torch.randn(3, 4, generator=generator)
    queue = F.normalize(torch.randn(5, 4, generator=generator), dim=1)
    tau = 0.3
    ours = info_nce_per_sample(q, k, queue, tau)
    for i in range(3):
        qi, ki = F.normalize(q[i], dim=0), F.normalize(k[i], dim=0)
        logits = [float(qi @ ki) / tau] + [float(qi @ n) / tau for n in queue]
        expected = -logits[0] + math.log(sum(math.exp(x) for x in logits))
        assert ours[i].item() == pytest.approx(expected, abs=1e-5)


def test_info_nce_with_empty_queue_is_zero() -> None:
    q = torch.randn(4, 3)
    assert torch.allclose(info_nce_per_sample(q, q, torch.zeros(0, 3), 0.2), torch.zeros(4))


def test_queue_is_fifo_with_wrap_around() -> None:
    queue = KeyQueue(size=5, dim=2)
    keys = [F.normalize(torch.tensor([[float(i), 1.0]]), dim=1) for i in range(9)]
    queue.enqueue(torch.cat(keys[:3]))
    assert int(queue.filled) == 3 and int(queue.pointer) == 3
    assert torch.allclose(queue.negatives(), torch.cat(keys[:3]))
    queue.enqueue(torch.cat(keys[3:7]))  # crosses the end: rows 3, 4 then 0, 1
    assert int(queue.filled) == 5 and int(queue.pointer) == 2
    assert torch.allclose(queue.keys, torch.cat([keys[5], keys[6], keys[2], keys[3], keys[4]]))
    # every key of the crossing batch is present; only the oldest (0, 1) were replaced
    queue.enqueue(torch.cat(keys[7:9]))
    assert torch.allclose(queue.keys, torch.cat([keys[5], keys[6], keys[7], keys[8], keys[4]]))


def test_batch_larger_than_queue_keeps_its_newest_keys() -> None:
    queue = KeyQueue(size=3, dim=2)
    keys = F.normalize(torch.randn(5, 2), dim=1)
    queue.enqueue(keys)
    stored = queue.keys[queue.keys[:, 0].argsort()]
    newest = keys[2:][keys[2:, 0].argsort()]
    assert torch.allclose(stored, newest, atol=1e-6)


def test_momentum_update_matches_formula(tmp_path: Path) -> None:
    trainer = build_trainer(tiny_config_with(tmp_path, *MOCO, "method.momentum=0.9"))
    model = trainer.model
    with torch.no_grad():
        for parameter in model.backbone.parameters():
            parameter.add_(torch.randn_like(parameter))
    online = [p.clone() for p in model.backbone.parameters()]
    keys_before = [p.clone() for p in model.key_backbone.parameters()]
    model.before_step(progress=0.0, epochs=2)
    assert model.current_momentum == pytest.approx(0.9)
    model.momentum_update()
    for key, old, query in zip(model.key_backbone.parameters(), keys_before, online, strict=True):
        assert torch.allclose(key, 0.9 * old + 0.1 * query, atol=1e-6)
    model.before_step(progress=2.0, epochs=2)
    assert model.current_momentum == pytest.approx(1.0)


def test_key_encoder_is_not_optimised(tmp_path: Path) -> None:
    trainer = build_trainer(tiny_config_with(tmp_path, *MOCO))
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert not any(id(p) in optimised for p in trainer.model.key_backbone.parameters())
    assert all(id(p) in optimised for p in trainer.model.backbone.parameters())


def test_resumed_moco_run_restores_queue_and_key_encoder(tmp_path: Path) -> None:
    config = tiny_config_with(tmp_path, *MOCO, "train.epochs=3")
    first = build_trainer(config)
    first.fit(until_epoch=2)
    saved = torch.load(list_checkpoints(first.run.checkpoint_dir)[-1], weights_only=False)
    resumed = build_trainer(tiny_config_with(tmp_path, *MOCO, "train.epochs=3", "run.resume=true"))
    model = resumed.model
    assert torch.equal(model.queue.keys, saved["model"]["queue.keys"])
    assert int(model.queue.pointer) == int(saved["model"]["queue.pointer"])
    assert int(model.queue.filled) == 20
    for name, tensor in model.key_backbone.state_dict().items():
        assert torch.equal(tensor, saved["model"][f"key_backbone.{name}"]), name
    assert torch.equal(model.queue.keys, first.model.queue.keys)


@pytest.mark.parametrize("symmetric", [False, True])
def test_moco_with_emp_trains_end_to_end(tmp_path: Path, symmetric: bool) -> None:
    run = pretrain(
        tiny_config_with(
            tmp_path,
            *MOCO,
            f"method.symmetric={str(symmetric).lower()}",
            "pruning.policy=emp",
            "pruning.rate=0.5",
            "train.epochs=3",
            "train.batch_size=8",
        )
    )
    records = metrics_records(run.path)
    assert [r["kept"] for r in records] == [48, 24, 24]  # warm-up, then rate 0.5
    assert all(math.isfinite(r["loss"]) and r["memory_std"] > 0 for r in records)
    scores = np.load(run.scores_path)
    assert int(scores["train_count"].sum()) == records[-1]["visits"] == 96
    checkpoint = torch.load(list_checkpoints(run.checkpoint_dir)[-1], weights_only=False)
    assert int(checkpoint["model"]["queue.filled"]) == 20  # 12 accepted steps of keys, capped
    assert int(checkpoint["model"]["queue.pointer"]) == 96 % 20


def test_memory_features_come_from_the_online_encoder_for_both_views(tmp_path: Path) -> None:
    trainer = build_trainer(tiny_config_with(tmp_path, *MOCO, "method.symmetric=false"))
    model = trainer.model
    with torch.no_grad():  # a key encoder that differs from the online one, as after training
        for parameter in model.key_backbone.parameters():
            parameter.add_(torch.randn_like(parameter))
    images = trainer.data.images[:8]
    reference, twice = copy.deepcopy(model), copy.deepcopy(model)
    buffers = {name: b.clone() for name, b in model.named_buffers() if "queue" not in name}
    torch.manual_seed(3)
    output = model(images)
    torch.manual_seed(3)
    view_a, view_b = reference.augmentation.two_views(images)
    with torch.no_grad():
        expected = torch.cat([reference.backbone(chunk) for chunk in view_b.chunk(2)])
    assert torch.allclose(output.features[1], expected, atol=1e-5)  # online, not momentum
    assert torch.allclose(output.projections[1], reference.projection_head(expected), atol=1e-5)
    # view b's pass left the BN statistics as view a's training pass made them
    with torch.no_grad():
        torch.cat([twice.backbone(chunk) for chunk in view_a.chunk(2)])
    for name, value in twice.named_buffers():
        if name.startswith("backbone."):
            assert torch.equal(dict(model.named_buffers())[name], value), name
    assert any(not torch.equal(buffers[n], b) for n, b in model.named_buffers() if n in buffers)


def test_a_skipped_step_changes_no_state(tmp_path: Path) -> None:
    trainer = build_trainer(
        tiny_config_with(tmp_path, *MOCO, "train.on_nonfinite=skip", "method.momentum=0.5")
    )
    model = trainer.model
    batch = GlobalBatch.single(torch.arange(16))
    assert trainer.train_step(batch, progress=0.5) is not None  # queue and keys now in use
    before = {name: value.clone() for name, value in model.state_dict().items()}
    forward = model.forward

    def poisoned(images: torch.Tensor, labels: torch.Tensor) -> MethodOutput:
        output = forward(images, labels)
        output.loss = output.loss * float("nan")
        return output

    model.forward = poisoned
    assert trainer.train_step(batch, progress=0.6) is None
    after = model.state_dict()
    changed = [name for name in before if not torch.equal(before[name], after[name])]
    assert changed == []  # weights, BN statistics, queue, pointer, key encoder
    model.forward = forward
    assert trainer.train_step(batch, progress=0.7) is not None
    assert int(model.queue.filled) == 20  # the accepted steps queued their keys


@pytest.mark.parametrize("size", [7, 8, 9, 16])
def test_fixed_bn_calls_do_not_depend_on_the_shard_size(size: int) -> None:
    calls = []

    def encoder(chunk: torch.Tensor) -> torch.Tensor:
        calls.append(len(chunk))
        return chunk

    inputs = torch.arange(size)
    assert torch.equal(chunked(encoder, inputs, splits=4, fixed_calls=True), inputs)
    assert len(calls) == 4 and sum(calls) == size


def test_embed_uses_the_online_backbone_not_the_key_encoder(tmp_path: Path) -> None:
    """The memory bank's refresh pass (``embed``) must see what training learns: the online
    backbone, not the momentum encoder that only trails it."""
    trainer = build_trainer(tiny_config_with(tmp_path, *MOCO))
    model = trainer.model.eval()  # as the refresh pass runs it
    with torch.no_grad():  # a key encoder that differs from the online one, as after training
        for parameter in model.key_backbone.parameters():
            parameter.add_(torch.randn_like(parameter))
    images = trainer.data.images[:8]
    reference = copy.deepcopy(model)
    torch.manual_seed(5)
    embedded = model.embed(images)
    torch.manual_seed(5)  # the same two views, drawn again
    views = torch.cat(reference.augmentation.two_views(images))
    with torch.no_grad():
        online = reference.backbone(views).view(2, 8, -1)
        momentum = reference.key_backbone(views).view(2, 8, -1)
    assert embedded.shape == online.shape
    assert torch.allclose(embedded, online, atol=1e-5)
    assert not torch.allclose(embedded, momentum, atol=1e-3)  # the encoders really differ


def test_a_loaded_queue_continues_at_its_saved_position() -> None:
    """The queue reads its position from host-side ints (no device wait); loading a state
    dict must set them, or a resumed run writes its next keys over the wrong rows."""
    generator = torch.Generator().manual_seed(0)
    original, restored = KeyQueue(size=5, dim=2), KeyQueue(size=5, dim=2)
    original.enqueue(torch.randn(3, 2, generator=generator))
    restored.load_state_dict(original.state_dict())
    assert len(restored.negatives()) == 3
    keys = torch.randn(4, 2, generator=generator)
    original.enqueue(keys)
    restored.enqueue(keys)
    assert torch.equal(restored.keys, original.keys) and int(restored.pointer) == 2
    assert len(restored.negatives()) == 5
