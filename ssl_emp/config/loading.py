"""Loading a configuration: YAML files plus dotted ``key=value`` overrides, every key checked.

Loading checks every key, type, ``Literal`` choice and numeric range and raises
:class:`~ssl_emp.errors.UserInputError` with a one-line message naming the key and what is
allowed, so the CLI can exit with code 2 instead of a traceback.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from ssl_emp.config.schema import Config, MethodConfig
from ssl_emp.errors import UserInputError


def is_section(tp: Any) -> bool:
    """Whether a field's type is a nested section (a dataclass) rather than a value."""
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _union_members(tp: Any) -> tuple[Any, ...]:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return typing.get_args(tp)
    return (tp,)


def literal_choices(tp: Any) -> tuple[str, ...] | None:
    """The names a ``Literal`` type (possibly ``| None``) allows, else None."""
    for member in _union_members(tp):
        if typing.get_origin(member) is typing.Literal:
            return typing.get_args(member)
    return None


def _allowed_types(tp: Any) -> tuple[Any, ...]:
    return tuple(
        str if typing.get_origin(member) is typing.Literal else member
        for member in _union_members(tp)
    )


def _type_name(tp: Any) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    parts = [names.get(t, "null") if t is not type(None) else "null" for t in _allowed_types(tp)]
    return " or ".join(parts)


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Return ``value`` as type ``tp`` or raise a one-line error naming ``key``."""
    allowed = _allowed_types(tp)
    if value is None:
        if type(None) in allowed:
            return None
    elif isinstance(value, bool):
        if bool in allowed:
            return value
    elif isinstance(value, int) and int in allowed:
        return value
    elif isinstance(value, int | float) and float in allowed:
        return float(value)
    elif isinstance(value, str) and str in allowed:
        return value
    elif isinstance(value, int | float) and str in allowed and literal_choices(tp) is None:
        return str(value)  # a name that YAML read as a number: run.dir=123
    raise UserInputError(f"config key '{key}' must be {_type_name(tp)}, got {value!r}")


def _check_rules(key: str, value: Any, tp: Any, meta: typing.Mapping[str, Any]) -> None:
    if value is None:
        return
    choices = literal_choices(tp)
    if choices is not None and value not in choices:
        raise UserInputError(
            f"config key '{key}' must be one of {', '.join(choices)}; got {value!r}"
        )
    if isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise UserInputError(f"config key '{key}' must be finite, got {value!r}")
        bounds = [
            ("ge", lambda v, b: v >= b, ">="),
            ("gt", lambda v, b: v > b, ">"),
            ("le", lambda v, b: v <= b, "<="),
            ("lt", lambda v, b: v < b, "<"),
        ]
        wanted = [f"{sign} {meta[name]}" for name, _, sign in bounds if name in meta]
        for name, ok, _ in bounds:
            if name in meta and not ok(value, meta[name]):
                raise UserInputError(
                    f"config key '{key}' must be {' and '.join(wanted)}; got {value!r}"
                )


def _unknown_key(key: str, allowed: list[str]) -> UserInputError:
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], allowed, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return UserInputError(
        f"unknown config key '{key}'{hint}; allowed here: {', '.join(sorted(allowed))}"
    )


def method_config_class(name: str) -> type[MethodConfig]:
    """The config section class of the method registered as ``name`` (its own keys).

    Raises:
        UserInputError: no method of that name (with the closest registered name).
    """
    from ssl_emp.methods.registry import METHODS  # the methods are heavy: imported when asked

    if name not in METHODS:
        close = difflib.get_close_matches(str(name), list(METHODS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UserInputError(
            f"config key 'method.name' must be one of {', '.join(METHODS)}; got {name!r}{hint}"
        )
    return METHODS[name].config_class


def _method_section(
    current: MethodConfig,
    values: Any,
    key: str,
    saved: bool,
    switched_from: str | None = None,
    overridden: frozenset[str] = frozenset(),
) -> MethodConfig:
    """The ``method`` section: the class of the method that ``values`` (or ``current``) names,
    with ``values`` applied. Keys of another method are refused, or dropped: in a config a run
    saved (``saved``: written by versions that listed every method's keys), and when an
    override switched ``method.name`` away from the file's ``switched_from`` (the file's keys
    for its own method do not apply to the new one; ``overridden`` keys always count)."""
    if not isinstance(values, dict):
        raise UserInputError(
            f"config key '{key}' is a section; give it as a mapping of keys, e.g. {key}.name=..."
        )
    name = values.get("name", current.name)
    if not isinstance(name, str):
        raise UserInputError(f"config key '{key}.name' must be a string, got {name!r}")
    chosen = method_config_class(name)
    section = current if type(current) is chosen else chosen()
    own = {f.name for f in dataclasses.fields(chosen)}
    foreign = {}
    for field_name in values:
        if field_name in own:
            continue
        owners = _methods_with_key(field_name)
        if owners and saved:
            continue
        if switched_from in owners and f"{key}.{field_name}" not in overridden:
            continue  # the file's key for the method it was written for
        if owners:
            raise UserInputError(
                f"config key '{key}.{field_name}' belongs to method {', '.join(owners)}, not "
                f"{name}; drop it (or set method.name={owners[0]})"
            )
        foreign[field_name] = values[field_name]
    mine = {k: v for k, v in values.items() if k in own or k in foreign}
    _apply(section, mine, prefix=f"{key}.")
    return section


def _methods_with_key(name: str) -> list[str]:
    """The registered methods whose config section has the key ``name``."""
    from ssl_emp.methods.registry import METHODS

    return [
        method
        for method, cls in METHODS.items()
        if name in {f.name for f in dataclasses.fields(cls.config_class)}
    ]


def _apply(
    target: Any,
    values: dict[str, Any],
    prefix: str,
    saved: bool = False,
    switched_from: str | None = None,
    overridden: frozenset[str] = frozenset(),
) -> None:
    """Set ``values`` on the dataclass ``target``, checking every key, type and rule (see
    :func:`_method_section` for the method section's own arguments)."""
    hints = typing.get_type_hints(type(target))
    known = {f.name: f for f in dataclasses.fields(target)}
    for name, value in values.items():
        key = f"{prefix}{name}"
        if name not in known:
            raise _unknown_key(key, list(known))
        tp = hints[name]
        if isinstance(tp, type) and issubclass(tp, MethodConfig):
            section = _method_section(
                getattr(target, name), value, key, saved, switched_from, overridden
            )
            setattr(target, name, section)
            continue
        if is_section(tp):
            if not isinstance(value, dict):
                raise UserInputError(
                    f"config key '{key}' is a section; give it as a mapping of keys, "
                    f"e.g. {key}.{next(iter(f.name for f in dataclasses.fields(tp)))}=..."
                )
            _apply(getattr(target, name), value, prefix=f"{key}.")
            continue
        coerced = _coerce(key, value, tp)
        _check_rules(key, coerced, tp, known[name].metadata)
        setattr(target, name, coerced)


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise UserInputError(
            f"override '{text}' is not of the form key=value (e.g. train.epochs=5)"
        )
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise UserInputError(f"override '{text}' has no key (e.g. train.epochs=5)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping, turning every failure into a one-line ``UserInputError``."""
    if not path.is_file():
        raise UserInputError(f"config file {path} does not exist; pass an existing YAML file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise UserInputError(
            f"config file {path} is not UTF-8 text (byte 0x{error.object[error.start]:02x} at "
            f"offset {error.start}); save it as UTF-8"
        ) from None
    except OSError as error:
        raise UserInputError(f"cannot read config file {path} ({error.strerror})") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise UserInputError(
            f"YAML syntax error in {path}{where}: {problem}; fix the file"
        ) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise UserInputError(f"config file {path} must hold a mapping of sections, not a list")
    return loaded


def _merge(base: dict[str, Any], path: list[str], value: Any) -> None:
    """Set ``value`` at the dotted ``path`` of the nested dict ``base`` (sections created)."""
    for part in path[:-1]:
        if not isinstance(base.get(part), dict):
            base[part] = {}
        base = base[part]
    base[path[-1]] = value


def config_from_dict(
    values: dict[str, Any], overrides: typing.Sequence[str] = (), saved: bool = False
) -> Config:
    """Build a checked :class:`Config` from a nested dict and dotted ``key=value`` overrides.

    The overrides are merged into the dict first, so their order does not matter (a
    ``method.queue_size`` may come before the ``method.name=moco`` it belongs to).

    Args:
        values: the nested config (a YAML file's mapping).
        overrides: dotted ``key=value`` strings, applied over ``values``.
        saved: ``values`` is a config a run saved: keys of methods other than its own, which
            older versions wrote, are dropped instead of refused.
    """
    merged: dict[str, Any] = copy.deepcopy(values)
    overridden = set()
    for text in overrides:
        path, value = _parse_override(text)
        _merge(merged, path, value)
        overridden.add(".".join(path))
    file_method = (
        values.get("method", {}).get("name") if isinstance(values.get("method"), dict) else None
    )
    method = merged.get("method")
    switched = (
        isinstance(method, dict) and file_method is not None and method.get("name") != file_method
    )
    config = Config()
    _apply(
        config,
        merged,
        prefix="",
        saved=saved,
        switched_from=file_method if switched else None,
        overridden=frozenset(overridden),
    )
    if config.model.backbone != "resnet_small":
        # torchvision's model registry is the list of names (imported only when one is asked)
        from ssl_emp.models.backbones import check_backbone_name

        check_backbone_name(config.model.backbone)
    return config


def load_config(path: str | Path | None, overrides: typing.Sequence[str] = ()) -> Config:
    """Load a YAML config (or the defaults when ``path`` is None) and apply overrides.

    Raises:
        UserInputError: on a missing file, YAML syntax error, unknown key, wrong type or a
            value out of range; the message names the key and what is allowed.
    """
    values = read_yaml(Path(path)) if path is not None else {}
    return config_from_dict(values, overrides)
