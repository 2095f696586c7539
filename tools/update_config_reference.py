"""Rewrite the key list of docs/configuration.md from the config schema.

    python tools/update_config_reference.py

tests/test_docs.py fails when a config key is missing from that page; this fixes it.
"""

from __future__ import annotations

from pathlib import Path

from ssl_emp.config import describe_options

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
MARKER = "`ssl-emp pretrain --help` prints this list too.\n\n```text\n"


def main() -> None:
    text = REFERENCE.read_text()
    start = text.index(MARKER) + len(MARKER)
    end = text.index("```", start)
    REFERENCE.write_text(text[:start] + describe_options() + "\n" + text[end:])
    print(f"updated the configuration reference in {REFERENCE}")


if __name__ == "__main__":
    main()
