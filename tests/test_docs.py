"""The README and docs/ stay true: the runnable examples run, every config key is documented,
every relative link resolves and the README stays a front page."""

import re
import shlex
from pathlib import Path

import pytest

from ssl_emp.config import describe_options
from ssl_emp.experiments.export import export_run
from ssl_emp.experiments.train import build_trainer
from tests.conftest import ROOT, TINY_OVERRIDES, tiny_config_with

README = (ROOT / "README.md").read_text()
DOCS = ROOT / "docs"


def _code_after(text: str, heading: str, language: str = "python") -> str:
    section = text.split(heading, 1)[1]
    return re.search(rf"```{language}\n(.*?)```", section, re.S).group(1)


def test_plugin_example_runs(capsys) -> None:
    page = (DOCS / "plugin.md").read_text()
    code = _code_after(page, "# Plug-in API")
    exec(compile(code, "docs/plugin.md example", "exec"), {})  # noqa: S102
    printed = capsys.readouterr().out.strip()
    expected = _code_after(page, "# Plug-in API", "text").strip()
    number = r"([0-9.]+)"
    pattern = rf"{number} of {number} sample-visits, train accuracy {number}"
    got, shown = re.fullmatch(pattern, printed), re.fullmatch(pattern, expected)
    assert got and shown, printed
    assert got.group(1, 2) == shown.group(1, 2)  # the budget is exact
    assert abs(float(got.group(3)) - float(shown.group(3))) < 0.01  # BLAS may differ a little


def test_the_torchvision_loading_example_runs(tmp_path: Path, monkeypatch) -> None:
    config = tiny_config_with(
        tmp_path, "model.backbone=resnet18", "model.cifar_stem=false", "train.epochs=1"
    )
    build_trainer(config).fit()
    monkeypatch.chdir(tmp_path)
    export_run(config.run.dir, "encoder.pt")
    page = (DOCS / "export_and_logging.md").read_text()
    namespace: dict = {}
    exec(_code_after(page, "### In another project, with torchvision only"), namespace)  # noqa: S102
    assert namespace["model"].conv1.in_channels == 3


def test_every_config_key_is_documented() -> None:
    reference = (DOCS / "configuration.md").read_text()
    for line in describe_options().splitlines():
        key = line.split()[0]
        assert f"  {key} " in reference, f"{key}: run tools/update_config_reference.py"


def test_the_readme_is_a_front_page() -> None:
    assert len(README.splitlines()) <= 300


@pytest.mark.parametrize(
    "page", [ROOT / "README.md", *sorted(DOCS.glob("*.md"))], ids=lambda path: path.name
)
def test_relative_links_resolve(page: Path) -> None:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        assert (page.parent / target).exists(), f"{page.name}: broken link {target}"


def _tour_commands() -> list[list[str]]:
    """The ``ssl-emp`` lines of the README's tour, continuation lines joined, comments cut."""
    block = _code_after(README, "## A tour", "bash")
    joined = re.sub(r"\\\n\s*", " ", block)
    commands = []
    for line in joined.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("ssl-emp "):
            commands.append(shlex.split(line)[1:])
    return commands


def _in_small_form(arguments: list[str]) -> list[str]:
    """A tour command on tiny synthetic data: the tiny settings go right after a shipped
    config (so the command's own overrides still win), a sweep takes two seeds, and "train it
    longer" goes from the tiny 2 epochs to 3."""
    small = []
    for position, token in enumerate(arguments):
        if token == "train.epochs=40":
            token = "train.epochs=3"
        if position > 0 and arguments[position - 1] == "--seeds":
            token = "0,1"
        small.append(token)
        if position > 0 and arguments[position - 1] == "-c" and token.startswith("configs/"):
            small += [*TINY_OVERRIDES, "data.subset=null", "train.batch_size=8"]
            small += ["eval.probe_epochs=2", "eval.knn_k=5"]
    return small


@pytest.mark.slow
def test_the_readme_tour_runs_top_to_bottom(tmp_path: Path, monkeypatch, capsys) -> None:
    """Every ``ssl-emp`` line of the tour, in order, in a fresh directory: no line may be
    refused by the ones before it (each run has its own run.dir)."""
    from ssl_emp.cli import main

    commands = _tour_commands()
    assert [command[0] for command in commands][:3] == ["pretrain"] * 3
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    monkeypatch.chdir(tmp_path)
    for command in commands:
        code = main(_in_small_form(command))
        assert code == 0, f"{' '.join(command)}: {capsys.readouterr().err}"
    assert (tmp_path / "runs/tour/encoder.pt").is_file()
    assert (tmp_path / "runs/tour/sweep/report.md").is_file()
    assert len((tmp_path / "runs/tour/emp/metrics.jsonl").read_text().splitlines()) == 3
