"""The package's layers: a module imports only from its own layer or the layers below."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

# bottom to top; a module's layer is its longest matching prefix
LAYERS = [
    (
        "ssl_emp.errors",
        "ssl_emp.io",
        "ssl_emp.config",
        "ssl_emp.collectives",
        "ssl_emp.neighbours",
        "ssl_emp.numerics",
    ),
    ("ssl_emp.data",),
    ("ssl_emp.models",),
    ("ssl_emp.methods",),
    ("ssl_emp.pruning",),
    ("ssl_emp.eval",),
    ("ssl_emp.engine",),
    ("ssl_emp.experiments",),
    ("ssl_emp.cli", "ssl_emp.__main__"),
]


# Imports of a higher layer made on purpose, inside a function: the config loader asks the
# method registry which section class ``method.name`` selects (each method owns its keys), so
# ``import ssl_emp.config`` stays light and the methods are loaded only with a config; it
# asks torchvision's model registry (through the backbones) whether ``model.backbone`` names a
# model, so a typo fails at load time.
LOOKUPS_UP = {
    ("ssl_emp.config.loading", "ssl_emp.methods.registry"),
    ("ssl_emp.config.reference", "ssl_emp.methods.registry"),  # each method's keys
    ("ssl_emp.config.loading", "ssl_emp.models.backbones"),
}


def layer_of(module: str) -> int:
    """Index into :data:`LAYERS` of a dotted module name."""
    for level, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return level
    raise AssertionError(f"{module} belongs to no layer; add it to LAYERS")


def imported_modules(path: Path) -> set[str]:
    """Every ``ssl_emp`` module a file imports (type-checking-only imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ssl_emp"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("ssl_emp"))
    return found


def upward_imports(package: Path) -> list[str]:
    """``module -> imported`` for every import of a higher layer."""
    problems = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if module == "ssl_emp":
            continue
        for imported in imported_modules(path):
            if (module, imported) in LOOKUPS_UP:
                continue
            if layer_of(imported) > layer_of(module):
                problems.append(f"{module} -> {imported}")
    return problems


def test_lower_layers_never_import_upper_ones() -> None:
    assert upward_imports(ROOT / "ssl_emp") == []


def test_an_upward_import_is_found(tmp_path: Path) -> None:
    package = tmp_path / "ssl_emp"
    (package / "pruning").mkdir(parents=True)
    (package / "pruning" / "pruner.py").write_text(
        "from ssl_emp.methods import Method\nfrom ssl_emp.engine.trainer import Trainer\n"
    )
    assert upward_imports(package) == ["ssl_emp.pruning.pruner -> ssl_emp.engine.trainer"]
