"""The reference of every config key (default, allowed values, help), for ``--help`` and
docs/configuration.md (``tools/update_config_reference.py``)."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from ssl_emp.config.loading import is_section, literal_choices
from ssl_emp.config.schema import Config, MethodConfig


def describe_options() -> str:
    """Every config key with its default and help text, for ``--help``."""
    lines: list[str] = []

    def line(section: Any, f: dataclasses.Field, prefix: str, owner: str = "") -> str:
        choices = literal_choices(typing.get_type_hints(type(section))[f.name])
        allowed = f" {{{'|'.join(choices)}}}" if choices else ""
        default = getattr(section, f.name)
        where = f"{owner}; " if owner else ""
        return f"  {prefix}{f.name}{allowed} ({where}default {default!r}): {f.metadata['help']}"

    def walk(section: Any, prefix: str) -> None:
        hints = typing.get_type_hints(type(section))
        for f in dataclasses.fields(section):
            if isinstance(hints[f.name], type) and issubclass(hints[f.name], MethodConfig):
                methods(prefix=f"{prefix}{f.name}.")
            elif is_section(hints[f.name]):
                walk(getattr(section, f.name), prefix=f"{prefix}{f.name}.")
            else:
                lines.append(line(section, f, prefix))

    def methods(prefix: str) -> None:
        """``method.name``, then each method's own keys, named with their method."""
        from ssl_emp.methods.registry import METHODS

        base = MethodConfig()
        lines.append(line(base, dataclasses.fields(base)[0], prefix))
        for name, method in METHODS.items():
            section = method.config_class()
            for f in dataclasses.fields(section)[1:]:  # the first is name
                lines.append(line(section, f, prefix, owner=name))

    walk(Config(), prefix="")
    return "\n".join(lines)
