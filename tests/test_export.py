"""``ssl-emp export`` and ``ssl_emp.load_backbone``: encoders that leave a run as plain files."""

import errno
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

import ssl_emp
from ssl_emp.cli import main
from ssl_emp.config import Config
from ssl_emp.engine.checkpoint import load_latest_checkpoint
from ssl_emp.engine.run_dir import RunDirectory
from ssl_emp.errors import UserInputError
from ssl_emp.experiments.evaluate import load_trained_backbone
from ssl_emp.experiments.export import export_run
from ssl_emp.experiments.train import build_trainer
from ssl_emp.io import atomic_write
from ssl_emp.methods import build_method
from ssl_emp.models import portable
from tests.conftest import tiny_config_with


def _trained(config: Config):
    trainer = build_trainer(config)
    trainer.fit()
    return trainer


def _inputs(channels: int = 3, size: int = 16) -> torch.Tensor:
    return torch.randn(6, channels, size, size, generator=torch.Generator().manual_seed(0))


def _run_backbone(trainer) -> nn.Module:
    return load_trained_backbone(
        trainer.run, trainer.config, trainer.data, torch.device("cpu")
    ).eval()


@pytest.mark.parametrize("cifar_stem", [False, True])
def test_torchvision_resnet18_loads_an_export_strictly(tmp_path: Path, cifar_stem: bool) -> None:
    trainer = _trained(
        tiny_config_with(
            tmp_path, "model.backbone=resnet18", f"model.cifar_stem={cifar_stem}", "train.epochs=1"
        )
    )
    out = tmp_path / "encoder.pt"
    export_run(str(trainer.run.path), str(out))
    model = torchvision.models.resnet18()
    model.fc = nn.Identity()
    if cifar_stem:  # the two-line change the docs show
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    model.load_state_dict(torch.load(out, weights_only=True), strict=True)
    model.eval()
    with torch.no_grad():
        expected = _run_backbone(trainer)(_inputs())
        assert torch.allclose(model(_inputs()), expected, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(expected, _untrained_features(trainer.config), atol=1e-3)


def _untrained_features(config: Config) -> torch.Tensor:
    """Features of a freshly built backbone (so "same features" cannot pass by accident)."""
    from ssl_emp.data import build_datasets

    train, _ = build_datasets(config.data, seed=config.seed)
    torch.manual_seed(123)
    return build_method(config, train).backbone.eval()(_inputs())


@pytest.mark.parametrize("name", ["encoder.pt", "encoder.safetensors"])
def test_load_backbone_rebuilds_resnet_small_from_the_file_alone(tmp_path: Path, name: str) -> None:
    trainer = _trained(tiny_config_with(tmp_path, "model.width=6"))
    out = tmp_path / name
    export_run(str(trainer.run.path), str(out))
    rebuilt = ssl_emp.load_backbone(out)
    assert not rebuilt.training
    with torch.no_grad():
        assert torch.equal(rebuilt(_inputs()), _run_backbone(trainer)(_inputs()))
    info = ssl_emp.export_metadata(out)
    assert (info["backbone"], info["width"], info["in_channels"]) == ("resnet_small", 6, 3)
    assert info["mean"] == list(trainer.data.mean) and info["epoch"] == 2
    assert info["feature_dim"] == 48


@pytest.mark.parametrize("method", ["simclr", "supervised"])
def test_the_head_travels_under_its_prefix(tmp_path: Path, method: str) -> None:
    trainer = _trained(tiny_config_with(tmp_path, f"method.name={method}"))
    out = tmp_path / "with_head.pt"
    export_run(str(trainer.run.path), str(out), head=True)
    model = build_method(trainer.config, trainer.data)
    model.load_state_dict(load_latest_checkpoint(trainer.run.checkpoint_dir)[1]["model"])
    model.eval()
    head = model.classifier if method == "supervised" else model.projection_head
    with torch.no_grad():
        expected = head(model.backbone(_inputs()))
        assert torch.allclose(ssl_emp.load_backbone(out, head=True)(_inputs()), expected, atol=1e-6)
    export_run(str(trainer.run.path), str(tmp_path / "plain.pt"))
    with pytest.raises(UserInputError, match="holds no head"):
        ssl_emp.load_backbone(tmp_path / "plain.pt", head=True)


def test_export_of_a_run_without_checkpoint_is_one_line(tmp_path: Path, capsys) -> None:
    config = tiny_config_with(tmp_path)
    RunDirectory.prepare(config).release()
    assert main(["export", config.run.dir, "--out", str(tmp_path / "e.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "has no checkpoint yet" in err
    assert not (tmp_path / "e.pt").exists()


def test_a_foreign_state_dict_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "plain.pt"
    torch.save(nn.Linear(2, 2).state_dict(), path)
    with pytest.raises(UserInputError, match="was not written by `ssl-emp export`"):
        ssl_emp.load_backbone(path)


@pytest.fixture(scope="module")
def simclr_run(tmp_path_factory) -> Path:
    """One trained SimCLR run (with a projection head) shared by the checks below."""
    tmp_path = tmp_path_factory.mktemp("export")
    _trained(tiny_config_with(tmp_path, "train.epochs=1"))
    return tmp_path / "run"


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("ssl-emp: error: "), err
    return err


def test_head_keys_are_the_heads_own_keys_under_head_dot(simclr_run: Path, tmp_path: Path) -> None:
    """``head.`` + the head's state_dict keys, so ``head.layers.0.weight``, never
    ``headlayers.0.weight`` (which load_backbone would not even notice on its own files)."""
    from safetensors.torch import load_file

    from ssl_emp.data import build_datasets

    config = RunDirectory(str(simclr_run)).load_config()
    model = build_method(config, build_datasets(config.data, seed=config.seed)[0])
    head_keys = {f"head.{key}" for key in model.projection_head.state_dict()}
    body_keys = set(model.backbone.body.state_dict())
    assert "head.layers.0.weight" in head_keys
    for name in ("with_head.pt", "with_head.safetensors"):
        export_run(str(simclr_run), str(tmp_path / name), head=True)
    assert set(torch.load(tmp_path / "with_head.pt", weights_only=True)) == body_keys | head_keys
    assert set(load_file(tmp_path / "with_head.safetensors")) == body_keys | head_keys


def test_export_into_an_existing_directory_is_one_line(
    simclr_run: Path, tmp_path: Path, capsys
) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    assert main(["export", str(simclr_run), "--out", str(tmp_path)]) == 2
    assert "is a directory" in _one_line_error(capsys)
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]
    assert (tmp_path / "mine.txt").read_text() == "keep me"


@pytest.mark.parametrize("name", ["encoder.onnx", "encoder.bin", "encoder", "encoder.PT"])
def test_an_extension_export_does_not_write_is_refused(
    simclr_run: Path, tmp_path: Path, capsys, name: str
) -> None:
    assert main(["export", str(simclr_run), "--out", str(tmp_path / name)]) == 2
    err = _one_line_error(capsys)
    assert ".pt" in err and ".pth" in err and ".safetensors" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["encoder.pt", "encoder.pth", "encoder.safetensors"])
def test_every_supported_extension_is_written(simclr_run: Path, tmp_path: Path, name: str) -> None:
    assert main(["export", str(simclr_run), "--out", str(tmp_path / name)]) == 0
    assert ssl_emp.export_metadata(tmp_path / name)["backbone"] == "resnet_small"


def test_an_out_path_under_a_regular_file_is_one_line(
    simclr_run: Path, tmp_path: Path, capsys
) -> None:
    blocker = tmp_path / "some_file"
    blocker.write_text("not a folder")
    assert main(["export", str(simclr_run), "--out", str(blocker / "x.pt")]) == 2
    err = _one_line_error(capsys)
    assert str(blocker / "x.pt") in err and "is a file, not a folder" in err
    assert blocker.read_text() == "not a folder"


def test_a_full_disk_is_one_line_and_keeps_the_old_export(
    simclr_run: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    out = tmp_path / "encoder.pt"
    out.write_bytes(b"the previous export")

    def fills_the_disk(path: Path, write) -> None:
        def half_then_full(stream) -> None:
            stream.write(b"half an export")
            raise OSError(errno.ENOSPC, "No space left on device")

        atomic_write(path, half_then_full)

    monkeypatch.setattr(portable, "atomic_write", fills_the_disk)
    assert main(["export", str(simclr_run), "--out", str(out)]) == 2
    err = _one_line_error(capsys)
    assert str(out) in err and "No space left on device" in err
    assert out.read_bytes() == b"the previous export"  # nothing half-written, nothing lost
    assert [p.name for p in tmp_path.iterdir()] == ["encoder.pt"]  # no temporary file left


def test_heads_are_rebuilt_from_their_description_and_old_files_still_load() -> None:
    from lightly.models.modules import SimCLRProjectionHead

    from ssl_emp.models.portable import build_head

    described = build_head({"class": "SimCLRProjectionHead", "kwargs": {"input_dim": 8,
                            "hidden_dim": 8, "output_dim": 4}})  # fmt: skip
    legacy = build_head({"kind": "simclr", "input_dim": 8, "hidden_dim": 8, "output_dim": 4})
    assert type(described) is type(legacy) is SimCLRProjectionHead
    linear = build_head({"kind": "linear", "input_dim": 8, "hidden_dim": None, "output_dim": 3})
    assert isinstance(linear, torch.nn.Linear) and linear.out_features == 3
    with pytest.raises(UserInputError, match="unknown head 'system'"):
        build_head({"class": "system", "kwargs": {}})  # only heads and torch.nn modules


def test_another_torchvision_family_loads_an_export_strictly(tmp_path: Path) -> None:
    """A model picked by name (not a ResNet) exports into torchvision's own class with the
    same two replacements the backbone made: the small-image stem and the classifier."""
    trainer = _trained(
        tiny_config_with(tmp_path, "model.backbone=mobilenet_v3_small", "train.epochs=1")
    )
    out = tmp_path / "encoder.pt"
    export_run(str(trainer.run.path), str(out))
    model = torchvision.models.mobilenet_v3_small()
    model.features[0][0] = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
    model.classifier[3] = nn.Identity()
    model.load_state_dict(torch.load(out, weights_only=True), strict=True)
    model.eval()
    with torch.no_grad():
        expected = _run_backbone(trainer)(_inputs())
        assert torch.allclose(model(_inputs()), expected, rtol=1e-4, atol=1e-5)
        assert torch.allclose(ssl_emp.load_backbone(out)(_inputs()), expected)
