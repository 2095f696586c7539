"""The README's runnable parts stay true: the plug-in example runs, every config key is listed."""

import re

from ssl_emp.config import describe_options
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_plugin_example_runs(capsys) -> None:
    section = README.split("### Plug-in API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(code, "README.md plug-in example", "exec"), {})  # noqa: S102
    printed = capsys.readouterr().out.strip()
    expected = re.search(r"```text\n(.*?)```", section, re.S).group(1).strip()
    number = r"([0-9.]+)"
    pattern = rf"{number} of {number} sample-visits, train accuracy {number}"
    got, shown = re.fullmatch(pattern, printed), re.fullmatch(pattern, expected)
    assert got and shown, printed
    assert got.group(1, 2) == shown.group(1, 2)  # the budget is exact
    assert abs(float(got.group(3)) - float(shown.group(3))) < 0.01  # BLAS may differ a little


def test_every_config_key_is_documented() -> None:
    for line in describe_options().splitlines():
        key = line.split()[0]
        assert f"  {key} " in README, key
