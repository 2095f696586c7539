"""The README and docs/ stay true: the runnable examples run, every config key is documented,
every relative link resolves and the README stays a front page."""

import re
from pathlib import Path

import pytest

from ssl_emp.config import describe_options
from ssl_emp.experiments.export import export_run
from ssl_emp.experiments.train import build_trainer
from tests.conftest import ROOT, tiny_config_with

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
