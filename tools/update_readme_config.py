"""Rewrite the "Configuration reference" block of README.md from the config schema.

    python tools/update_readme_config.py

tests/test_readme.py fails when a config key is missing from the README; this fixes it.
"""

from __future__ import annotations

from pathlib import Path

from ssl_emp.config import describe_options

README = Path(__file__).resolve().parent.parent / "README.md"
MARKER = "`ssl-emp pretrain --help` prints this list too.\n\n```text\n"


def main() -> None:
    text = README.read_text()
    start = text.index(MARKER) + len(MARKER)
    end = text.index("```", start)
    README.write_text(text[:start] + describe_options() + "\n" + text[end:])
    print(f"updated the configuration reference in {README}")


if __name__ == "__main__":
    main()
