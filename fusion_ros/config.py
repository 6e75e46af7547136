"""Helpers shared by the typed configs: overrides from dicts/YAML checked against field names."""

from __future__ import annotations

import dataclasses
import difflib
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

from fusion_ros.errors import ConfigError

__all__ = ["apply_overrides", "load_yaml", "parse_set_args", "to_dict"]

T = TypeVar("T")


def _suggest(key: str, names: list[str]) -> str:
    close = difflib.get_close_matches(key, names, n=1)
    return f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(sorted(names))}"


def _coerce(value: Any, typ: Any, name: str) -> Any:
    """Parse ``value`` into the field's type; strings from the CLI are parsed, never eval'd."""
    origin = typing.get_origin(typ)
    if origin is typing.Union:
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return _coerce(value, args[0], name)
    if origin in (tuple, list):
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"'{name}' expects a list, got {value!r}")
        args = typing.get_args(typ)
        item = args[0] if args else Any
        out = [_coerce(v, item, name) if item is not Any and item is not Ellipsis else v for v in value]
        return tuple(out) if origin is tuple else out
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise ConfigError(f"'{name}' expects true/false, got {value!r}")
    if typ in (int, float, str):
        try:
            if typ is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            return typ(value)
        except (TypeError, ValueError):
            raise ConfigError(f"'{name}' expects {typ.__name__}, got {value!r}") from None
    return value


def apply_overrides(cfg: T, overrides: Mapping[str, Any] | None) -> T:
    """Return a copy of the dataclass ``cfg`` with ``overrides`` applied.

    Unknown keys raise :class:`ConfigError` naming the key and the closest valid one.
    """
    if not overrides:
        return cfg
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    hints = typing.get_type_hints(type(cfg))
    values = {}
    for key, value in overrides.items():
        if key not in fields:
            raise ConfigError(f"unknown {type(cfg).__name__} key '{key}'" + _suggest(key, list(fields)))
        values[key] = _coerce(value, hints[key], key)
    return dataclasses.replace(cfg, **values)


def load_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file '{p}' does not exist; pass an existing YAML file")
    data = yaml.safe_load(p.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{p}' must hold a mapping at the top level")
    return data


def parse_set_args(items: list[str] | None) -> dict[str, Any]:
    """Parse ``--set key=value`` items; values are YAML scalars (``0.5``, ``true``, ``[1, 2]``)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got '{item}'")
        key, raw = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(raw)
    return out


def to_dict(cfg: Any) -> dict:
    d = dataclasses.asdict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
