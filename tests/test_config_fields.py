"""Every command's config: each field (recursively) is reachable from the command line (`--set`,
through the command's own parser) and from YAML, `--fields` lists it, the flags are fields, and
no field is defined twice (the build's and tts run's sections ARE the component classes)."""

from __future__ import annotations

import dataclasses
import types
import typing

import click
import pytest
import yaml
from click.testing import CliRunner

from data_gen.build import BuildConfig, build_cmd
from data_gen.build.config import SET_BY_BUILD, SyntheticConfig
from data_gen.cli import rollout_cmd, synth
from data_gen.real.cli import validate_cmd
from data_gen.synth.pipeline import SynthConfig
from data_gen.validate import ValidateConfig
from sft.cli import train_cmd as sft_train
from sft.config import SFTRunConfig
from swelego.agent.rollout import RolloutConfig
from swelego.config import ConfigError, command_config, config_to_dict, leaf_fields, load_config
from swelego.trajectories.filter import FilterConfig
from tts.cli import run_cmd as tts_run
from tts.run import TTSRunConfig
from verifier.cli import train_cmd as verifier_train
from verifier.train import VerifierRunConfig

COMMANDS = {"data build": build_cmd, "data synth": synth, "data validate": validate_cmd, "data rollout": rollout_cmd,
            "tts run": tts_run, "sft train": sft_train, "verifier train": verifier_train}
# Commands whose body reads its config through swelego.config.command_config (flags + -c + --set).
ADAPTERS = {"data synth": (synth, ["pypi:x==1", "--out", "o"]), "data validate": (validate_cmd, [".", "--out", "o"]),
            "data rollout": (rollout_cmd, [".", "--out", "o"]),
            "tts run": (tts_run, ["--out", "o"])}
# Values that a field only takes from a fixed set.
CHOICES = {"p2p": "full", "policy": "openai", "tool_format": "openhands", "executor": "ray", "kind": "regressive",
           "overlong": "keep_start", "mask_source": "both", "reasoning": "drop", "measure": "pass_rate",
           "lr_schedule": "per_stage", "balance": "upsample", "attn_implementation": "sdpa", "dtype": "bfloat16",
           "save_strategy": "steps", "packing": True, "device": "cpu", "traceback_blame": "run"}


# Fields whose values are checked against other names.
VALUES = {"rules.extra_patterns": {"shell_error": ["boom"]}}


def _hint(cls: type, dotted: str):
    tp = cls
    for part in dotted.split("."):
        tp = typing.get_type_hints(tp)[part]
    return tp


def _default(cls: type, dotted: str):
    obj = cls()
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return config_to_dict(obj)


def _value(cls: type, dotted: str):
    """A value for the field that differs from its default, of the field's type."""
    name = dotted.rsplit(".", 1)[-1]
    for suffix, v in VALUES.items():
        if dotted.endswith(suffix):
            return v
    if name in CHOICES:
        return CHOICES[name]
    tp = _hint(cls, dotted)
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    base = args[0] if typing.get_origin(tp) in (typing.Union, types.UnionType) else tp
    default = _default(cls, dotted)
    if base is bool:
        return not default
    if base is int:
        return (default or 0) + 3
    if base is float:
        return (default or 0.0) + 0.25 if (default or 0.0) + 0.25 <= 1 else (default or 0.0) - 0.05
    if base is str:
        return f"set-{name}"
    origin = typing.get_origin(base)
    if origin in (list, tuple):
        (item,) = [a for a in typing.get_args(base) if a is not Ellipsis][:1] or [str]
        if dataclasses.is_dataclass(item):
            return default  # a list of records (curriculum stages, buckets): its default, spelled out
        if default:  # a list with meaning (rule names, buckets): a part of it
            return list(default)[:1] if len(default) > 1 else []
        return ["a", "b"] if item is str else [1, 2]
    if base is dict or origin is dict:
        return {"k": 1}
    return default


def _fields(cls: type) -> list[str]:
    return [f for f in leaf_fields(cls) if not (cls is BuildConfig and f.split(".")[0] in SET_BY_BUILD
                                               and f.split(".", 1)[1] in SET_BY_BUILD[f.split(".")[0]])]


CASES = [(name, f) for name, cmd in COMMANDS.items() for f in _fields(cmd.callback.config_class)]


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_takes_set_and_lists_its_fields(name):
    cmd = COMMANDS[name]
    opts = {o for p in cmd.params for o in getattr(p, "opts", [])}
    assert "--set" in opts and "--fields" in opts
    res = CliRunner().invoke(cmd, ["--fields"])
    assert res.exit_code == 0, res.output
    listed = {line.split(" ", 1)[0] for line in res.output.splitlines()}
    missing = [f for f in leaf_fields(cmd.callback.config_class) if f not in listed]
    assert not missing, f"{name} --fields does not list {missing}"


@pytest.mark.parametrize(("name", "field"), CASES, ids=[f"{n}:{f}" for n, f in CASES])
def test_every_field_is_reachable_from_set_and_yaml(name, field, tmp_path):
    cls = COMMANDS[name].callback.config_class
    value = _value(cls, field)
    via_set = load_config(cls, None, {field: value})
    nested: dict = {}
    node = nested
    *heads, last = field.split(".")
    for h in heads:
        node = node.setdefault(h, {})
    node[last] = value
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(nested))
    via_yaml = load_config(cls, path)
    for cfg in (via_set, via_yaml):
        got = cfg
        for part in field.split("."):
            got = getattr(got, part)
        assert config_to_dict(got) == config_to_dict(value) or list(config_to_dict(got)) == list(value)


@pytest.mark.parametrize("name", ADAPTERS)
def test_set_reaches_every_field_through_the_command_line(name):
    """The command's own parser: one `--set` per field, then the config the command body reads."""
    cmd, essentials = ADAPTERS[name]
    cls = cmd.callback.config_class
    fields = [f for f in leaf_fields(cls) if f not in ("out", "rollout.out")]
    sets = [a for f in fields for a in ("--set", f"{f}={yaml.safe_dump(_value(cls, f), default_flow_style=True).strip().removesuffix('...').strip()}")]
    ctx = cmd.make_context(cmd.name, [*essentials, *sets])
    with ctx:
        cfg = command_config(cls)
    for f in fields:
        got = cfg
        for part in f.split("."):
            got = getattr(got, part)
        want = _value(cls, f)
        assert config_to_dict(got) == want or list(config_to_dict(got)) == list(want), f


def test_flags_land_in_their_fields():
    ctx = tts_run.make_context("run", ["--out", "o", "--dataset", "d", "--verifier", "v", "--api-key-env", "MY_KEY",
                                       "--command-timeout", "7", "--memory", "4g", "--cpus", "2", "--samples", "3",
                                       "--policy", "oracle"])
    with ctx:
        cfg = command_config(TTSRunConfig, essentials={"rollout.out": "o"})
    r = cfg.rollout
    assert (r.api_key_env, r.command_timeout, r.memory, r.cpus, r.samples, r.policy) == ("MY_KEY", 7.0, "4g", 2.0, 3,
                                                                                          "oracle")
    # tts run's own rollout defaults stay where a flag did not set them
    assert r.trajectories_file == "samples.jsonl" and TTSRunConfig().rollout.samples == 16
    ctx = rollout_cmd.make_context("rollout", [".", "--out", "o", "--no-grade", "--samples-per-task", "2"])
    with ctx:
        cfg = command_config(RolloutConfig)
    assert cfg.grade is False and cfg.samples == 2


def test_the_build_sections_are_the_component_configs():
    hints = typing.get_type_hints(BuildConfig)
    assert hints["teacher"] is RolloutConfig
    assert issubclass(hints["synthetic"], SynthConfig) and hints["synthetic"] is SyntheticConfig
    assert typing.get_type_hints(SynthConfig)["validate"] is ValidateConfig
    assert hints["filter"] is FilterConfig
    assert typing.get_type_hints(TTSRunConfig)["rollout"] is RolloutConfig
    # the synthetic section adds only which repositories, nothing SynthConfig already has
    own = {f.name for f in dataclasses.fields(SyntheticConfig)} - {f.name for f in dataclasses.fields(SynthConfig)}
    assert own == {"enabled", "sources"}


def _classes(cls: type, seen: dict) -> None:
    if cls in seen:
        return
    seen[cls] = None
    for base in cls.__mro__[1:]:
        if dataclasses.is_dataclass(base):
            _classes(base, seen)
    for tp in typing.get_type_hints(cls).values():
        for t in (tp, *typing.get_args(tp)):
            if dataclasses.is_dataclass(t):
                _classes(t, seen)


def test_no_field_is_defined_twice():
    """Across every config class the commands reach, no two fields carry the same help text (a copied
    field), except the build-wide keys the build hands to its components (SET_BY_BUILD)."""
    seen: dict = {}
    for cmd in COMMANDS.values():
        _classes(cmd.callback.config_class, seen)
    passed_down = {(SynthConfig, f) for f in SET_BY_BUILD["synthetic"]} | {(RolloutConfig, f)
                                                                          for f in SET_BY_BUILD["teacher"]}
    texts: dict[str, list[str]] = {}
    for cls in seen:
        if cls is SyntheticConfig:
            continue  # inherits SynthConfig's fields
        for f in dataclasses.fields(cls):
            if any(f.name in {g.name for g in dataclasses.fields(b)} for b in cls.__mro__[1:]
                   if dataclasses.is_dataclass(b)):
                continue  # inherited: counted once, at the base that defines it
            if (cls, f.name) in passed_down or (cls is BuildConfig and f.name in ("namespace", "base", "executor",
                                                                                   "ray_address")):
                continue
            text = f.metadata.get("help", "")
            assert text, f"{cls.__name__}.{f.name} has no help"
            texts.setdefault(text, []).append(f"{cls.__module__}.{cls.__name__}.{f.name}")
    twice = {t: where for t, where in texts.items() if len(where) > 1}
    assert not twice, twice


def test_old_build_keys_still_work_and_build_owned_keys_say_where_they_go(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump({"synthetic": {"test_timeout": 77, "baseline_runs": 2, "test_selection": False}}))
    cfg = load_config(BuildConfig, old)
    v = cfg.synthetic.validate
    assert (v.test_timeout, v.baseline_runs, v.test_selection) == (77.0, 2, False)
    # the new name wins over the old one
    cfg = load_config(BuildConfig, old, {"synthetic.validate.test_timeout": 5})
    assert cfg.synthetic.validate.test_timeout == 5.0
    from data_gen.build import check_config

    for key, where in (("teacher.out", "out"), ("synthetic.namespace", "namespace"),
                       ("synthetic.llm_model", "llm.model")):
        cfg = load_config(BuildConfig, None, {key: "x"})
        with pytest.raises(ConfigError) as e:
            check_config(cfg)
        msg = str(e.value)
        assert "\n" not in msg and key in msg and f"`{where}`" in msg


def test_a_bad_set_is_one_line():
    res = CliRunner().invoke(click.Group(commands={"rollout": rollout_cmd}),
                             ["rollout", ".", "--out", "o", "--set", "no_such_field=1"])
    assert isinstance(res.exception, ConfigError)
    assert "unknown config key no_such_field" in str(res.exception) and "\n" not in str(res.exception)


def test_sft_and_verifier_configs_are_their_commands():
    assert sft_train.callback.config_class is SFTRunConfig
    assert verifier_train.callback.config_class is VerifierRunConfig


def test_a_config_file_is_read_below_the_flags_and_a_partial_part_keeps_the_commands_defaults(tmp_path):
    path = tmp_path / "tts.yaml"
    path.write_text(yaml.safe_dump({"dataset": "d", "verifier": "v", "rollout": {"policy": "oracle", "memory": "8g"}}))
    ctx = tts_run.make_context("run", ["--out", "o", "-c", str(path), "--memory", "3g"])
    with ctx:
        cfg = command_config(TTSRunConfig, essentials={"rollout.out": "o"})
    r = cfg.rollout
    assert (cfg.dataset, cfg.verifier, r.policy, r.memory) == ("d", "v", "oracle", "3g")
    assert r.samples == 16 and r.trajectories_file == "samples.jsonl"  # tts run's own, not RolloutConfig's


def test_sft_and_verifier_flags_are_their_fields():
    from swelego.config import flag_overrides

    ctx = sft_train.make_context("train", ["configs/sft/tiny-cpu.yaml", "--data", "README.md", "--output-dir", "x",
                                           "--max-steps", "3", "--no-error-mask", "--no-curriculum"])
    with ctx:
        cfg = load_config(SFTRunConfig, "configs/sft/tiny-cpu.yaml", flag_overrides())
    assert (cfg.data.paths, cfg.output_dir, cfg.training.max_steps, cfg.data.error_mask, cfg.curriculum.enabled) == (
        ["README.md"], "x", 3, False, False)
    ctx = sft_train.make_context("train", ["configs/sft/tiny-cpu.yaml"])
    with ctx:
        assert flag_overrides() == {}  # absent flags leave the file's values alone
    ctx = verifier_train.make_context("train", ["configs/verifier/tiny-cpu.yaml", "--kind", "regressive",
                                                "--max-steps", "2"])
    with ctx:
        cfg = load_config(VerifierRunConfig, "configs/verifier/tiny-cpu.yaml", flag_overrides())
    assert cfg.kind == "regressive" and cfg.training.max_steps == 2
