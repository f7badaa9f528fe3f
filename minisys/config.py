"""Typed settings from defaults, a TOML file and command-line flags — in that order.

A setting's default lives in a dataclass; a TOML file (read with the standard library's
`tomllib`) may override it; a flag given on the command line overrides both. Whatever the
source, a wrong key or a wrong type is reported with its full dotted path, so a learner who
writes `[gateway] prot = 8081` reads "gateway.prot: unknown key (expected one of: …)"
instead of a traceback.

    @dataclass
    class LimitSettings:
        rate: float = 10.0
        burst: int = 20

    limits = from_mapping(LimitSettings, toml["limits"], where="limits")

Read next: `gateway/config.py` (routes, upstreams, consumers) and the launcher's topology.

Simpler than the real thing: no environment-variable layer, no schema files; nested
settings are nested dataclasses and lists of them.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A setting is missing, unknown or of the wrong type. The message names it."""


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file, turning syntax errors into a ConfigError naming the file."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def from_mapping(cls: type[T], data: Mapping[str, Any], *, where: str = "") -> T:
    """Build dataclass `cls` from `data`, checking every key and type."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or 'config'}: expected a table, got {_kind(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    toml_names = {name.replace("_", "-"): name for name in fields}
    values: dict[str, Any] = {}
    for key, raw in data.items():
        name = key if key in fields else toml_names.get(key)
        path = f"{where}.{key}" if where else key
        if name is None:
            expected = ", ".join(sorted(fields))
            raise ConfigError(f"{path}: unknown key (expected one of: {expected})")
        values[name] = _convert(hints[name], raw, path)
    for name, field in fields.items():
        missing = field.default is dataclasses.MISSING
        missing = missing and field.default_factory is dataclasses.MISSING
        if missing and name not in values:
            path = f"{where}.{name}" if where else name
            raise ConfigError(f"{path}: required key is missing")
    return cls(**values)


def _kind(value: object) -> str:
    kinds = {dict: "a table", list: "an array", str: "a string", bool: "a boolean",
             int: "an integer", float: "a number"}  # fmt: skip
    return kinds.get(type(value), type(value).__name__)


def _convert(hint: Any, raw: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if raw is None and type(None) in args:
            return None
        errors = []
        for option in args:
            if option is type(None):
                continue
            try:
                return _convert(option, raw, path)
            except ConfigError as exc:
                errors.append(str(exc))
        if len(errors) == 1:
            raise ConfigError(errors[0])
        raise ConfigError(f"{path}: {_kind(raw)} not allowed")
    if origin is list:
        if not isinstance(raw, list):
            raise ConfigError(f"{path}: expected an array, got {_kind(raw)}")
        return [_convert(args[0], item, f"{path}[{i}]") for i, item in enumerate(raw)]
    if origin is dict:
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{path}: expected a table, got {_kind(raw)}")
        return {str(k): _convert(args[1], v, f"{path}.{k}") for k, v in raw.items()}
    if origin is typing.Literal:
        if raw not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{path}: {raw!r} is not one of {choices}")
        return raw
    if dataclasses.is_dataclass(hint):
        return from_mapping(hint, raw, where=path)  # type: ignore[arg-type]
    if hint is float and isinstance(raw, int) and not isinstance(raw, bool):
        return float(raw)
    if hint is Any or (isinstance(hint, type) and isinstance(raw, hint)):
        if hint is int and isinstance(raw, bool):
            raise ConfigError(f"{path}: expected an integer, got a boolean")
        return raw
    expected = _kind(hint()) if isinstance(hint, type) else str(hint)
    raise ConfigError(f"{path}: expected {expected}, got {_kind(raw)} {raw!r}")


def parse_size(text: str | int) -> int:
    """'64mb' → 67108864. Accepts b, kb, mb, gb (powers of 1024, like Redis), any case."""
    if isinstance(text, int):
        return text
    # Longest suffixes first, so "64mb" is read as 64 × mb, not "64m" × b.
    units = (("gb", 1 << 30), ("mb", 1 << 20), ("kb", 1 << 10), ("g", 1 << 30),
             ("m", 1 << 20), ("k", 1 << 10), ("b", 1))  # fmt: skip
    s = text.strip().lower()
    number, factor = s, 1
    for unit, unit_factor in units:
        if s.endswith(unit):
            number, factor = s[: -len(unit)].strip(), unit_factor
            break
    if not number.isascii() or not number.isdigit():
        raise ConfigError(f"invalid size {text!r} (examples: 1048576, 512kb, 64mb, 1gb)")
    return int(number) * factor
