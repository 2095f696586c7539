"""The two install paths agree: pip (pyproject.toml + constraints.txt) and conda
(environment.yml), which conda itself cannot check here (it is not installed)."""

import re
import tomllib

import yaml

from tests.conftest import ROOT


def _pins(lines: list[str]) -> dict[str, str]:
    """``name==version`` requirement lines as {name: version}."""
    found = {}
    for line in lines:
        match = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*==\s*([^\s;#]+).*", line)
        if match:
            found[match.group(1).lower()] = match.group(2)
    return found


def test_environment_yml_uses_conda_forge_and_the_pip_pins() -> None:
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert environment["channels"] == ["conda-forge"]  # the pytorch channel is frozen at 2.5
    conda_packages = [entry for entry in environment["dependencies"] if isinstance(entry, str)]
    names = {re.split(r"[=<> ]", entry)[0] for entry in conda_packages}
    assert not names & {"pytorch", "torchvision", "pytorch-cuda", "cudatoolkit"}
    assert "faiss-gpu" in names
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    python = next(entry for entry in conda_packages if entry.startswith("python="))
    assert project["requires-python"] == ">=" + python.split("=")[1]
    pip_section = next(
        entry["pip"] for entry in environment["dependencies"] if isinstance(entry, dict)
    )
    assert "-c constraints.txt" in pip_section and "-e ." in pip_section
    assert not _pins(pip_section)  # versions live in constraints.txt / pyproject.toml only


def test_constraints_agree_with_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = _pins(project["dependencies"])
    constraints = _pins((ROOT / "constraints.txt").read_text().splitlines())
    assert {"torch", "torchvision"} <= set(constraints)
    for name, version in constraints.items():
        assert declared.get(name) == version, (
            f"{name}: constraints {version}, pyproject {declared.get(name)}"
        )
