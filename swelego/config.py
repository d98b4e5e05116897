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
    if origin is tuple:
        args = [a for a in get_args(tp) if a is not Ellipsis] or [Any]
        if isinstance(value, str) and args[0] is str:
            return tuple(s.strip() for s in value.split(",") if s.strip())
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
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


def _renamed(cls: type, data: dict, where: str) -> dict:
    """`data` with the old keys of `cls` (its `renamed_keys` ClassVar: old key -> new dotted key
    below `cls`, or a sentence when the key is gone) moved to their new place."""
    renamed = getattr(cls, "renamed_keys", None) or {}
    if not any(k in renamed for k in data):
        return data
    data = dict(data)
    prefix = f"{where}." if where else ""
    for old, new in renamed.items():
        if old not in data:
            continue
        if " " in new:  # no new place: say what replaces it
            raise ConfigError(f"config key {prefix}{old} is gone: {new}")
        value = data.pop(old)
        head, _, rest = new.partition(".")
        if rest:
            sub = data.get(head)
            sub = dict(sub) if isinstance(sub, dict) else {}
            if rest not in sub:  # the new name wins when both are given
                _set_dotted(sub, rest, value)
            data[head] = sub
        elif head not in data:
            data[head] = value
    return data


def _is_class_default(obj: Any) -> bool:
    try:
        return obj == type(obj)()
    except TypeError:  # required fields: no class default to compare with
        return False


def _build(cls: type[T], data: dict, where: str = "") -> T:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    data = _renamed(cls, data, where)
    unknown = [k for k in data if k not in names]
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"unknown config key {prefix}{unknown[0]} (valid keys: {', '.join(names)})")
    # A nested part given in part starts from the field's own default (e.g. tts run's rollout: policy
    # openai, 16 samples), not from its class's defaults.
    for f in dataclasses.fields(cls):
        v = data.get(f.name)
        if isinstance(v, dict) and f.default_factory is not dataclasses.MISSING:
            d = f.default_factory()
            if dataclasses.is_dataclass(d) and not _is_class_default(d):
                data = {**data, f.name: merge(config_to_dict(d), v)}
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where or cls.__name__}: {e}") from None


def load_config(cls: type[T], path: str | Path | None = None, overrides: dict | None = None) -> T:
    """`cls` built from the YAML file at `path` (or defaults) with `overrides` applied."""
    data = load_yaml(path) if path is not None else {}
    return _build(cls, merge(data, overrides or {}))


def load_yaml(path: str | Path) -> dict:
    """The mapping in the YAML file at `path`; a one-line ConfigError when it is not one."""
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
    return loaded


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


# -- commands: `[CONFIG.yaml] [--set KEY=VALUE ...]` plus a few flags, all checked against the fields ----

_META = "swelego.config"


def field_of(cls: type, dotted: str) -> dataclasses.Field:
    """The dataclass field at `dotted` (nested dataclasses walked); ConfigError when there is none."""
    tp: Any = cls
    found = None
    for part in dotted.split("."):
        fields = {f.name: f for f in dataclasses.fields(tp)} if dataclasses.is_dataclass(tp) else {}
        if part not in fields:
            raise ConfigError(f"{cls.__name__} has no field {dotted}")
        found = fields[part]
        tp = typing.get_type_hints(tp)[part]
    assert found is not None
    return found


def leaf_fields(cls: type, prefix: str = "") -> list[str]:
    """Dotted names of every field of `cls` that holds a value (nested dataclasses expanded)."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if dataclasses.is_dataclass(hints[f.name]):
            out += leaf_fields(hints[f.name], f"{prefix}{f.name}.")
        else:
            out.append(prefix + f.name)
    return out


def _meta(ctx) -> dict:
    return ctx.meta.setdefault(_META, {"config": None, "sets": (), "flags": {}})


def config_flag(cls: type, dotted: str, *decls: str, **kw: Any):
    """A click option that sets the config field `dotted` of `cls`: its help is the field's own
    (unless given), and when the option is absent the config keeps its value (YAML or default)."""
    import click

    f = field_of(cls, dotted)
    kw.setdefault("help", f.metadata.get("help", ""))
    default = f.default if f.default is not dataclasses.MISSING else None
    if default not in (None, "", ()) and "[default" not in kw["help"]:
        shown = ",".join(default) if isinstance(default, tuple) else default
        kw["help"] += f"  [default: {shown}]"
    kw.setdefault("default", None)
    if "type" not in kw and not kw.get("is_flag") and "/" not in decls[0]:
        tp = typing.get_type_hints(field_of_owner(cls, dotted))[dotted.rsplit(".", 1)[-1]]
        base = [a for a in get_args(tp) if a is not type(None)] if get_origin(tp) in (typing.Union, types.UnionType) \
            else [tp]
        if base and base[0] in (int, float, str):
            kw["type"] = base[0]

    def store(ctx, param, value):
        from click.core import ParameterSource

        given = ctx.get_parameter_source(param.name) not in (None, ParameterSource.DEFAULT)
        if given and value is not None:
            _meta(ctx)["flags"][dotted] = value
        return value

    return click.option(*decls, callback=store, expose_value=False, **kw)



def config_flags(cls: type, flags: list[tuple[str, str, dict]], prefix: str = ""):
    """Several `config_flag`s at once, in the order given: (field, flag, click keywords) each,
    the fields under `prefix` of `cls`."""

    def deco(fn):
        for name, flag, kw in reversed(flags):
            fn = config_flag(cls, prefix + name, flag, **kw)(fn)
        return fn

    return deco


def field_of_owner(cls: type, dotted: str) -> type:
    """The dataclass that declares the field at `dotted`."""
    tp: Any = cls
    for part in dotted.split(".")[:-1]:
        tp = typing.get_type_hints(tp)[part]
    return tp


def print_fields(cls: type) -> None:
    """Every field of `cls` with its type, default and help (the `--fields` output)."""
    import sys

    from rich.console import Console
    from rich.markup import escape

    console = Console(width=None if sys.stdout.isatty() else 150)
    for name, tp, default, text in describe_config(cls):
        console.print(f"[bold]{escape(name)}[/] ({escape(tp)}, default {escape(default)}): {escape(text)}",
                      highlight=False)


def fields_option(cls: type):
    """click decorator: `--fields` lists every field of `cls` and exits; `cmd.callback.config_class`
    names `cls` (the field tests walk every command's class)."""
    import click

    def fields(ctx, _param, value):
        if value and not ctx.resilient_parsing:
            print_fields(cls)
            ctx.exit(0)

    def deco(fn):
        fn.config_class = cls
        return click.option("--fields", is_flag=True, is_eager=True, expose_value=False, callback=fields,
                            help="List every config field (dotted name, type, default, help) and exit.")(fn)

    return deco


def config_options(cls: type, *, config: str = "option"):
    """click decorator: `--set KEY=VALUE` (repeatable), `--fields` and the config file, as the
    optional CONFIG argument (`config="argument"`) or `-c/--config FILE` (`config="option"`, for
    commands whose positionals are their inputs). The command reads the result with
    `command_config(cls, ...)`; `cmd.callback.config_class` names `cls` (tests walk it)."""
    import click

    def keep(key: str):
        def cb(ctx, _param, value):
            _meta(ctx)[key] = value
            return value
        return cb

    def deco(fn):
        fn = fields_option(cls)(fn)
        fn = click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", expose_value=False,
                          callback=keep("sets"),
                          help="Set a config field, e.g. --set a.b=3 (dotted key, YAML value; repeatable; "
                               "wins over the config file and the flags).")(fn)
        if config == "argument":
            fn = click.argument("config", required=False, expose_value=False, callback=keep("config"),
                                type=click.Path(exists=True, dir_okay=False))(fn)
        else:
            fn = click.option("-c", "--config", metavar="CONFIG.yaml", default=None, expose_value=False,
                              callback=keep("config"), type=click.Path(exists=True, dir_okay=False),
                              help="YAML file of config fields (see --fields); flags and --set override it.")(fn)
        return fn

    return deco


def command_config(cls: type[T], defaults: dict | None = None, essentials: dict | None = None) -> T:
    """The config of the running command: `defaults` (the command's own, below the file), the
    CONFIG file, `essentials` (positionals such as the output directory) and the flags, then
    --set. Call it inside a command decorated with `config_options`."""
    import click

    meta = _meta(click.get_current_context())
    data: dict = {}
    if meta["config"] is not None:
        data = load_yaml(meta["config"])
    overrides = {**{k: v for k, v in (essentials or {}).items() if v is not None}, **meta["flags"],
                 **parse_sets(meta["sets"])}
    return load_config(cls, None, merge(merge(merge({}, defaults or {}), data), overrides))


def flag_overrides() -> dict[str, Any]:
    """The config_flag options given to the running command, as dotted-key overrides (for
    commands that read their config themselves; `command_config` applies them already)."""
    import click

    return dict(_meta(click.get_current_context())["flags"])


def config_file_given() -> bool:
    import click

    return _meta(click.get_current_context())["config"] is not None
