"""Run configurations: documented dataclasses, read from YAML and overridden from the CLI.

`load_config(cls, path, overrides)` turns a YAML file plus overrides (nested dicts or dotted
keys such as ``{"training.max_steps": 10}``) into a typed dataclass tree, refusing unknown keys
with the list of valid ones. Every field carries a ``help`` text in its metadata (declare
fields with `doc_field`); `describe_config(cls)` lists them for docs and `fields` commands.
Every room's command configs (SFT recipes, the data build, the verifier) use this module.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import field
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

import yaml

from swelego.errors import SwelegoError

T = TypeVar("T")


class ConfigError(SwelegoError):
    """A config file or override does not fit its dataclass."""


def doc_field(text: str, **kw) -> Any:
    """A dataclass field with its help text (shown by `describe_config`)."""
    return field(metadata={"help": text}, **kw)


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        nxt = node.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            node[p] = nxt
        node = nxt
    node[parts[-1]] = value


def merge(base: dict, overrides: dict) -> dict:
    """A copy of `base` with `overrides` applied; override keys may be dotted paths or nested dicts."""
    out = copy.deepcopy(base)
    for k, v in (overrides or {}).items():
        if "." in k:
            _set_dotted(out, k, v)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return _build(tp, value, where)
    if origin is list:
        (item,) = get_args(tp) or (Any,)
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            if isinstance(value, str) and item is str:
                return [s.strip() for s in value.split(",") if s.strip()]
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def _build(cls: type[T], data: dict, where: str = "") -> T:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = [k for k in data if k not in names]
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"unknown config key {prefix}{unknown[0]} (valid keys: {', '.join(names)})")
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where or cls.__name__}: {e}") from None


def load_config(cls: type[T], path: str | Path | None = None, overrides: dict | None = None) -> T:
    """`cls` built from the YAML file at `path` (or defaults) with `overrides` applied."""
    data: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} not found")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: expected a mapping at the top level")
        data = loaded
    return _build(cls, merge(data, overrides or {}))


def config_to_dict(obj: Any) -> Any:
    """Plain YAML/JSON-ready data from a config dataclass tree."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: config_to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, (list, tuple)):
        return [config_to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: config_to_dict(v) for k, v in obj.items()}
    return obj


def dump_config(obj: Any, path: str | Path | None = None) -> str:
    text = yaml.safe_dump(config_to_dict(obj), sort_keys=False, allow_unicode=True)
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text


def describe_config(cls: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(dotted name, type, default, help) for every field of `cls`, nested dataclasses expanded."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        name = prefix + f.name
        tp = hints[f.name]
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            d = f.default_factory()
            default = "..." if dataclasses.is_dataclass(d) else repr(config_to_dict(d))
        else:
            default = "(required)"
        rows.append((name, _type_name(tp), default, f.metadata.get("help", "")))
        if dataclasses.is_dataclass(tp):
            rows.extend(describe_config(tp, name + "."))
    return rows


def parse_sets(pairs: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """`--set KEY=VALUE` options as overrides: dotted keys, values read as YAML (so `3e-4`,
    `true`, `[a, b]` get their types). A pair without `=` is a ConfigError."""
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides
