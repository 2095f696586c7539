"""The plug-in core stays light: ``import ssl_emp.pruning`` in a user's own loop loads neither
lightly, kornia nor torchvision (checked in a fresh interpreter through ``sys.modules``)."""

import subprocess
import sys

import pytest

from tests.conftest import ROOT

HEAVY = ("lightly", "kornia", "torchvision")


def _loaded_after(statement: str) -> list[str]:
    code = (
        f"import sys\n{statement}\n"
        f"print(sorted({{name.split('.')[0] for name in sys.modules}} & {set(HEAVY)!r}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return eval(result.stdout.strip())  # noqa: S307 - the list this test printed


@pytest.mark.parametrize(
    "statement",
    [
        "import ssl_emp.pruning",
        "from ssl_emp.pruning import Pruner, supervised_memory, batch_memory, FeatureBank",
        "from ssl_emp.config import PruningConfig, MemoryConfig",
        "import ssl_emp",
    ],
)
def test_the_core_loads_no_model_or_augmentation_library(statement: str) -> None:
    assert _loaded_after(statement) == []


def test_the_check_sees_a_heavy_import() -> None:
    # the oracle of the test above: importing the methods does load them
    assert _loaded_after("import ssl_emp.methods") == sorted(HEAVY)
