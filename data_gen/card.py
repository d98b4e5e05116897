"""The dataset card of a `swelego data build`: README.md with Hugging Face YAML front matter,
card.json with every number in it, and PNG plots.

Every number is computed here from the build's own records (task rows, the synthetic funnel, the
real-task summary, the rollouts, the filter report, the export summary and the stage state
files); the text only formats `card.json`, so a reader can check each figure against the files.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from swelego.config import config_to_dict
from swelego.difficulty import TURN_BUCKETS, Bucket
from swelego.records import read_jsonl

SOURCES = ("synthetic", "real")
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:%| s| min| h)?|\*\*.*\*\*|–")
OUTCOME_COLORS = {"resolved": "#2e7d32", "semi_resolved": "#f9a825", "unresolved": "#9e9e9e"}


def _json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def _jsonl(path: Path) -> list[dict]:
    """The records of a JSONL file of the build ([] when missing; a torn line skipped)."""
    return read_jsonl(path, missing_ok=True)


def _metadata(row: dict) -> dict:
    """A task row's metadata (a JSON string in tasks.jsonl, as in Arrow)."""
    m = row.get("metadata") or {}
    if isinstance(m, str):
        try:
            m = json.loads(m)
        except ValueError:
            return {}
    return m if isinstance(m, dict) else {}


def _outcome(rec: dict) -> str:
    from swelego.trajectories.filter import outcome

    return outcome(rec)


def _turns(rec: dict) -> int:
    from swelego.trajectories.filter import assistant_turns

    return assistant_turns(rec)


def _split_strategy(strategy: str) -> tuple[str, str]:
    head, _, tail = (strategy or "?").partition("/")
    return head or "?", tail or "-"


def _pct(n: float, d: float) -> float | None:
    return round(100.0 * n / d, 1) if d else None


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


def _bucket_of(turns: int, buckets: list[Bucket]) -> str | None:
    from swelego.difficulty import bucket_of

    return bucket_of(turns, buckets)


def _group_tables(rows: list[dict], trajs: list[dict], kept: list[dict], task_of: dict) -> tuple[dict, dict, dict]:
    """Tasks, trajectories, resolved, semi-resolved and kept counts per source, strategy and modifier."""

    def group_table(key_of) -> dict[str, dict[str, int]]:
        table: dict[str, dict[str, int]] = {}
        blank = {"tasks": 0, "trajectories": 0, "resolved": 0, "semi_resolved": 0, "kept": 0}
        for r in rows:
            table.setdefault(key_of(r), dict(blank))["tasks"] += 1
        for t in trajs:
            row = task_of.get(t["instance_id"])
            if row is None:
                continue
            g = table.setdefault(key_of(row), dict(blank))
            g["trajectories"] += 1
            g["resolved"] += bool(t.get("resolved"))
            g["semi_resolved"] += bool(t.get("semi_resolved")) and not t.get("resolved")
        for t in kept:
            row = task_of.get(t["instance_id"])
            if row is not None:
                table.setdefault(key_of(row), dict(blank))["kept"] += 1
        return dict(sorted(table.items()))

    return (group_table(lambda r: r.get("source") or "?"),
            group_table(lambda r: _split_strategy(r.get("strategy", ""))[0]),
            group_table(lambda r: _split_strategy(r.get("strategy", ""))[1]))


def _funnel(rows: list[dict], trajs: list[dict], kept: list[dict], task_of: dict, synth: dict,
            real: dict) -> tuple[dict, dict]:
    """Candidates -> valid -> tasks -> rolled out -> resolved -> kept, in all and per source."""

    def source_of(iid: str) -> str:
        return (task_of.get(iid) or {}).get("source") or "?"

    s_all = ((synth.get("funnel") or {}).get("all") or {}).get("all") or {}
    real_counts = real.get("funnel") or {}
    funnel_by_source = {
        "synthetic": {"candidates": int(s_all.get("candidates", 0)), "valid": int(s_all.get("valid", 0))},
        "real": {"candidates": int(real_counts.get("candidates", 0)), "valid": int(real_counts.get("valid", 0))},
    }
    for src in SOURCES:
        f = funnel_by_source[src]
        f["tasks"] = sum(1 for r in rows if r.get("source") == src)
        mine = [t for t in trajs if source_of(t["instance_id"]) == src]
        f["rolled_out"] = len(mine)
        f["resolved"] = sum(bool(t.get("resolved")) for t in mine)
        f["kept"] = sum(1 for t in kept if source_of(t["instance_id"]) == src)
    funnel = {k: sum(funnel_by_source[s][k] for s in SOURCES)
              for k in ("candidates", "valid", "tasks", "rolled_out", "resolved", "kept")}
    # rows of another source (imported, ...) still count in the totals
    funnel["tasks"] = len(rows)
    funnel["rolled_out"] = len(trajs)
    funnel["resolved"] = sum(bool(t.get("resolved")) for t in trajs)
    funnel["kept"] = len(kept)
    return funnel, funnel_by_source


def _environments(synth: dict, real: dict) -> dict:
    """Environment builds tried and built, per stage.

    Synthetic: one environment per repository source. Real: one per group of tasks whose dependency
    spec hashes the same (data_gen.real.validate.env_stats), including LLM repairs."""
    items = [{**e, "stage": "synthetic"} for e in synth.get("envs", [])]
    r_env = real.get("envs") or {}
    by_stage = {"synthetic": {"tried": len(items), "built": sum(1 for e in items if e.get("ok"))},
                "real": {"tried": int(r_env.get("tried", 0)), "built": int(r_env.get("built", 0)),
                         "built_after_repair": int(r_env.get("built_after_repair", 0))}}
    tried = sum(v["tried"] for v in by_stage.values())
    built = sum(v["built"] for v in by_stage.values())
    return {"tried": tried, "built": built, "success_rate": _pct(built, tried), "by_stage": by_stage, "items": items}


def _difficulty(trajs: list[dict], kept: list[dict], buckets: list[Bucket]) -> dict:
    """Assistant turns per trajectory: a histogram by outcome, and the buckets' resolve rates."""
    thresholds = [b.min for b in buckets if b.min > 0]
    turns = [(_turns(t), _outcome(t)) for t in trajs]
    top = max([n for n, _ in turns] + [max(thresholds, default=0) + 10, 10])
    width = 5 if top <= 150 else 10
    edges = list(range(0, int(math.ceil((top + 1) / width)) * width + 1, width))
    bins = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        c = Counter(o for n, o in turns if lo <= n < hi)
        bins.append({"min": lo, "max": hi, **{o: c.get(o, 0) for o in OUTCOME_COLORS}})
    kept_ids = Counter((t["instance_id"], (t.get("sampling") or {}).get("sample", 0)) for t in kept)
    by_bucket = []
    for b in buckets:
        members = [t for t in trajs if _bucket_of(_turns(t), buckets) == b.name]
        resolved = sum(bool(t.get("resolved")) for t in members)
        by_bucket.append({
            "bucket": b.name, "min": b.min, "max": b.max, "trajectories": len(members), "resolved": resolved,
            "resolve_rate": _pct(resolved, len(members)),
            "kept": sum(kept_ids[(t["instance_id"], (t.get("sampling") or {}).get("sample", 0))] for t in members)})
    return {"measure": "assistant turns per trajectory", "thresholds": thresholds, "bins": bins,
            "by_bucket": by_bucket, "mean_turns": round(sum(n for n, _ in turns) / len(turns), 2) if turns else None}


def _stage_costs(states: dict) -> dict:
    """Wall time, container hours and attempts of each stage before the card."""
    stages = {}
    for name, st in states.items():
        if name == "card":
            continue
        stages[name] = {"seconds": round(st.seconds, 1), "container_hours": round(st.container_seconds / 3600, 4),
                        "attempts": st.attempts, "complete": st.complete, "failed": st.failed,
                        "finished_at": st.finished_at}
    return stages


def card_data(out: Path, cfg, states: dict) -> dict:
    """Everything the card shows, from the files of the build in `out`."""
    from swelego.agent.rollout import current_trajectories, policy_label

    rows = _jsonl(out / "tasks" / "tasks.jsonl")
    synth = _json(out / "tasks" / "synthetic" / "funnel.json", {})
    real = _json(out / "tasks" / "real" / "summary.json", {})
    trajs = current_trajectories(_jsonl(out / "trajectories" / "trajectories.jsonl"),
                                 {r["instance_id"] for r in rows}, cfg.teacher.samples)
    kept = _jsonl(out / "trajectories" / "kept" / "kept.jsonl")
    filt = _json(out / "trajectories" / "kept" / "report.json", {})
    export = _json(out / "sft" / "export.json", {})
    merged = _json(out / "tasks" / "report.json", {})

    task_of = {r["instance_id"]: r for r in rows}

    by_source, by_strategy, by_modifier = _group_tables(rows, trajs, kept, task_of)
    funnel, funnel_by_source = _funnel(rows, trajs, kept, task_of, synth, real)

    environments = _environments(synth, real)
    difficulty = _difficulty(trajs, kept, cfg.card.difficulty_buckets or TURN_BUCKETS)
    stages = _stage_costs(states)
    finished = sorted(st["finished_at"] for st in stages.values() if st["finished_at"])

    policies = policy_label(trajs) if trajs else cfg.teacher.policy
    cfg_dict = cfg.to_dict() if hasattr(cfg, "to_dict") else config_to_dict(cfg)
    cfg_dict.pop("out", None)
    return {
        "name": cfg.name,
        "pretty_name": cfg.card.pretty_name or cfg.name,
        "built_at": finished[-1] if finished else "",
        "policy": policies,
        "oracle": any(t.get("policy") == "oracle" for t in trajs) or (not trajs and cfg.teacher.policy == "oracle"),
        "oracle_noise": cfg.teacher.noise,
        "tasks": {"total": len(rows), "repositories": len({r.get("repo") for r in rows}),
                  "by_source": by_source, "by_strategy": by_strategy, "by_modifier": by_modifier},
        "funnel": funnel,
        "tasks_dropped": dict(Counter(d["reason"].split(":")[0] for d in merged.get("dropped", []))),
        "funnel_by_source": funnel_by_source,
        # How each row's FAIL_TO_PASS / PASS_TO_PASS were obtained (synthetic rows: inferred from the
        # coverage map, audited by a full-suite run, or from a full-suite run; real rows: full).
        "lists_by_validation": dict(sorted(Counter(
            (_metadata(r).get("validation") or "full") for r in rows).items())),
        "synthetic_funnel": synth.get("funnel", {}),
        "environments": environments,
        "trajectories": {"total": len(trajs), "by_outcome": dict(Counter(_outcome(t) for t in trajs)),
                         "samples_per_task": cfg.teacher.samples},
        "filter": {"input": filt.get("input", 0), "kept": filt.get("kept", 0),
                   "kept_by_outcome": filt.get("kept_by_outcome", {}), "dropped": filt.get("dropped", {})},
        "export": export,
        "difficulty": difficulty,
        "stages": stages,
        "total_seconds": round(sum(s["seconds"] for s in stages.values()), 1),
        "total_container_hours": round(sum(s["container_hours"] for s in stages.values()), 4),
        "config": cfg_dict,
        "plots": ["difficulty.png", "resolve_by_difficulty.png"],
    }


# -- plots -------------------------------------------------------------------------------------------------


def plot_difficulty(data: dict, path: Path) -> None:
    """Stacked histogram of turns per trajectory by outcome, with the curriculum thresholds drawn."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    d = data["difficulty"]
    fig = Figure(figsize=(7.5, 3.6), dpi=110)
    ax = fig.subplots()
    lefts = [b["min"] for b in d["bins"]]
    width = (d["bins"][0]["max"] - d["bins"][0]["min"]) if d["bins"] else 5
    bottom = [0] * len(lefts)
    for outcome, color in OUTCOME_COLORS.items():
        heights = [b[outcome] for b in d["bins"]]
        ax.bar(lefts, heights, width=width, bottom=bottom, align="edge", color=color,
               label=outcome.replace("_", "-"), edgecolor="white", linewidth=0.5)
        bottom = [a + h for a, h in zip(bottom, heights, strict=True)]
    ymax = max(bottom + [1])
    for th in d["thresholds"]:
        ax.axvline(th, color="#c62828", linestyle="--", linewidth=1.2)
        ax.text(th, ymax * 1.02, f" {th:g} turns", color="#c62828", fontsize=8, va="bottom")
    ax.set_ylim(0, ymax * 1.15)
    ax.set_xlim(0, d["bins"][-1]["max"] if d["bins"] else 100)
    ax.set_xlabel("assistant turns per trajectory")
    ax.set_ylabel("trajectories")
    ax.set_title("Difficulty (curriculum thresholds dashed)", fontsize=10)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})


def plot_resolve_rate(data: dict, path: Path) -> None:
    """Resolve rate per difficulty bucket, with resolved/trajectories on each bar."""
    from matplotlib.figure import Figure

    rows = data["difficulty"]["by_bucket"]
    fig = Figure(figsize=(5.5, 3.4), dpi=110)
    ax = fig.subplots()
    names = [f"{r['bucket']}\n[{r['min']:g}, {'∞' if r['max'] is None else format(r['max'], 'g')})" for r in rows]
    rates = [(r["resolve_rate"] or 0.0) for r in rows]
    ax.bar(names, rates, color="#1565c0")
    for i, r in enumerate(rows):
        ax.text(i, rates[i] + 2, f"{r['resolved']}/{r['trajectories']}", ha="center", fontsize=9)
    ax.set_ylim(0, 110)
    ax.set_ylabel("resolved (%)")
    ax.set_title("Resolve rate by difficulty (assistant turns)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})


# -- markdown ----------------------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[Any]]) -> str:
    """A markdown table; columns holding only numbers (or blanks) are right-aligned."""

    def cell(v: Any) -> str:
        if v is None:
            return "–"
        return str(v).replace("|", "\\|").replace("\n", " ")

    def numeric(j: int) -> bool:
        vals = [r[j] for r in rows if r[j] not in (None, "")]
        return bool(vals) and all(isinstance(v, (int, float)) or _NUMBER.fullmatch(str(v)) for v in vals)

    align = ["---:" if j and numeric(j) else "---" for j in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def _rate(v: float | None) -> str:
    return "–" if v is None else f"{v:g}%"


def _hours(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.2f} h"


def front_matter(data: dict) -> dict:
    cfg = data["config"]
    kept_splits = [k for k in cfg["filter"]["keep"]]
    configs = [
        {"config_name": "tasks", "data_files": [{"split": "train", "path": "tasks/tasks.jsonl"}]},
        {"config_name": "trajectories", "data_files": [{"split": "rollouts", "path": "trajectories/trajectories.jsonl"}]
         + [{"split": k, "path": f"trajectories/kept/{k}.jsonl"} for k in kept_splits]},
    ]
    if "sharegpt" in cfg["export"]["formats"]:
        configs.append({"config_name": "sft_sharegpt", "data_files": [{"split": "train", "path": "sft/sharegpt.json"}]})
    n = max(data["tasks"]["total"], data["trajectories"]["total"])
    return {
        "pretty_name": data["pretty_name"],
        "license": cfg["card"]["license"],
        "language": ["en"],
        "task_categories": ["text-generation"],
        "tags": ["swe-bench", "software-engineering", "code", "agent-trajectories", "swelego",
                 *(["oracle-policy"] if data["oracle"] else []), *cfg["card"]["tags"]],
        "size_categories": [_size_category(n)],
        "configs": configs,
    }


def _card_intro(data: dict) -> list[str]:
    """Front matter, title, description, the summary sentence and the oracle warning."""
    cfg = data["config"]
    t, f, tr = data["tasks"], data["funnel"], data["trajectories"]
    parts = ["---", yaml.safe_dump(front_matter(data), sort_keys=False, allow_unicode=True).rstrip(), "---", "",
             f"# {data['pretty_name']}", ""]
    if cfg["card"]["description"]:
        parts += [cfg["card"]["description"].strip(), ""]
    src = ", ".join(f"{g['tasks']} {name}" for name, g in t["by_source"].items()) or "none"
    kept = data["filter"]["kept_by_outcome"]
    parts += [
        f"Built with `swelego data build` (last stage finished {data['built_at'] or '–'}): **{t['total']} tasks** "
        f"({src}) from {t['repositories']} {'repository' if t['repositories'] == 1 else 'repositories'}, **{tr['total']} trajectories** "
        f"({tr['samples_per_task']} per task) by `{data['policy']}`, of which **{f['kept']} are kept** for training "
        f"({', '.join(f'{n} {k.replace(chr(95), chr(45))}' for k, n in kept.items() if k in cfg['filter']['keep'])}).",
        "",
    ]
    if data["oracle"]:
        parts += [f"> **Oracle trajectories.** The policy is `oracle`: it replays each task's gold patch through the "
                  f"agent's tools (noise {data['oracle_noise']:g}: the share of gold hunks replaced by a corrupted "
                  "edit). These trajectories exercise the pipeline; they are not a model's output and should not "
                  "be presented as one.", ""]
    return parts


def _card_funnel(data: dict) -> list[str]:
    """The funnel table, how the test lists were obtained and the rows dropped when merging."""
    f = data["funnel"]
    parts: list[str] = []
    parts += ["## Funnel", "",
              _table(["stage", *SOURCES, "total"],
                     [[k.replace("_", " "), *[data["funnel_by_source"][s][k] for s in SOURCES], f[k]]
                      for k in ("candidates", "valid", "tasks", "rolled_out", "resolved", "kept")]),
              "", "Candidates are synthetic bugs or mined changes; valid ones break (synthetic) or fix (real) at "
              "least one test; tasks are the valid ones that became rows (with an image and a problem statement) "
              "and passed de-duplication and decontamination; rolled out counts trajectories.", ""]
    if data.get("lists_by_validation"):
        lists = data["lists_by_validation"]
        parts += ["FAIL_TO_PASS / PASS_TO_PASS lists: " + ", ".join(f"{n} {k}" for k, n in lists.items())
                  + " (inferred: the covering tests ran and PASS_TO_PASS came from the clean suite's coverage map; "
                  "audited: inferred, then confirmed by a full-suite run; full: from a full-suite run). Every row "
                  "was graded by swebench before it was kept: gold resolves it, the empty patch does not.", ""]
    if data["tasks_dropped"]:
        parts += ["Rows dropped when merging: " + ", ".join(f"{n} {k}" for k, n in data["tasks_dropped"].items())
                  + " (see `tasks/report.json`).", ""]
    return parts


def _card_groups(data: dict) -> list[str]:
    """Tasks and trajectories by source, strategy and modifier."""
    t = data["tasks"]
    parts: list[str] = []
    parts += ["## Tasks and trajectories by source, strategy and modifier", ""]
    for title, table in (("source", t["by_source"]), ("strategy", t["by_strategy"]), ("modifier", t["by_modifier"])):
        parts += [f"### By {title}", "",
                  _table([title, "tasks", "trajectories", "resolved", "semi-resolved", "kept"],
                         [[k, g["tasks"], g["trajectories"], g["resolved"], g["semi_resolved"], g["kept"]]
                          for k, g in table.items()]), ""]
    return parts


def _card_environments(data: dict) -> list[str]:
    """Environment builds."""
    parts: list[str] = []
    env = data["environments"]
    parts += ["## Environments", "",
              f"Environment builds succeeded for **{env['built']} of {env['tried']}** environments "
              f"({_rate(env['success_rate'])}): one per synthetic repository, one per group of real tasks that "
              "share a dependency spec.", "",
              _table(["stage", "tried", "built", "success rate"],
                     [[k, v["tried"], v["built"], _rate(_pct(v["built"], v["tried"]))]
                      for k, v in env["by_stage"].items()]), ""]
    if env["by_stage"]["real"].get("built_after_repair"):
        parts += [f"{env['by_stage']['real']['built_after_repair']} real environment(s) built only after an "
                  "LLM repair of the inferred spec.", ""]
    if env["items"]:
        parts += [_table(["source", "repository", "built", "python", "image / error"],
                         [[e.get("source", ""), e.get("repo", ""), "yes" if e.get("ok") else "no",
                           e.get("python", ""), e.get("image") or e.get("error", "")] for e in env["items"]]), ""]
    return parts


def _card_difficulty(data: dict) -> list[str]:
    """Turns per trajectory and the curriculum buckets."""
    parts: list[str] = []
    d = data["difficulty"]
    parts += ["## Difficulty", "",
              f"Difficulty is the number of assistant turns per trajectory (mean {d['mean_turns']}); the dashed "
              f"lines are the curriculum thresholds ({', '.join(f'{x:g}' for x in d['thresholds'])} turns).", "",
              "![Turns per trajectory](plots/difficulty.png)", "",
              "![Resolve rate by difficulty](plots/resolve_by_difficulty.png)", "",
              _table(["bucket", "turns", "trajectories", "resolved", "resolve rate", "kept"],
                     [[b["bucket"], f"[{b['min']:g}, {'∞' if b['max'] is None else format(b['max'], 'g')})",
                       b["trajectories"], b["resolved"], _rate(b["resolve_rate"]), b["kept"]]
                      for b in d["by_bucket"]]), ""]
    return parts


def _card_filter(data: dict) -> list[str]:
    """What filtering kept and why it dropped the rest."""
    cfg = data["config"]
    parts: list[str] = []
    fl = data["filter"]
    parts += ["## Filtering", "",
              f"{fl['kept']} of {fl['input']} trajectories kept (outcomes kept: "
              f"{', '.join(cfg['filter']['keep'])}; max turns: {cfg['filter']['max_turns'] or 'none'}).", "",
              _table(["outcome / drop reason", "trajectories"],
                     [[f"kept: {k}", n] for k, n in fl["kept_by_outcome"].items() if k in cfg["filter"]["keep"]]
                     + [[f"dropped: {k}", n] for k, n in fl["dropped"].items()]), ""]
    return parts


def _card_sft(data: dict) -> list[str]:
    """The SFT files and error masking."""
    cfg = data["config"]
    parts: list[str] = []
    ex = data["export"]
    if ex:
        rows = []
        if "trajectories" in cfg["export"]["formats"]:
            rows.append(["sft/trajectories.jsonl", "ours (input of `swelego sft`)", ex.get("records", 0)])
        if "sharegpt" in cfg["export"]["formats"]:
            rows.append(["sft/sharegpt.json", "LLaMA-Factory sharegpt + turn_mask", ex.get("sharegpt", 0)])
        if "openhands" in cfg["export"]["formats"]:
            rows.append(["sft/openhands.jsonl", "OpenHands text calls", ex.get("openhands", 0)])
        parts += ["## SFT files", "", _table(["file", "format", "records"], rows), ""]
        lab = ex.get("labels")
        if lab:
            parts += [f"Error masking: {lab['masked_turns']} of {lab['assistant_turns']} assistant turns masked "
                      f"({_rate(_pct(lab['masked_turns'], lab['assistant_turns']))}); by rule: "
                      f"{', '.join(f'{k} {v}' for k, v in lab['masked_by_rule'].items()) or 'none'}. "
                      f"Register `sft/dataset_info.json` with LLaMA-Factory and set `turn_mask: true`.", ""]
    return parts


def _card_cost(data: dict) -> list[str]:
    """Wall time and container-hours per stage."""
    parts: list[str] = []
    parts += ["## Cost", "",
              _table(["stage", "wall time", "container-hours", "attempts", "complete"],
                     [[name, _hours(s["seconds"]), f"{s['container_hours']:.4f}", s["attempts"],
                       "yes" if s["complete"] else f"no ({s['failed']} failed)"] for name, s in data["stages"].items()]
                     + [["**total**", _hours(data["total_seconds"]), f"{data['total_container_hours']:.4f}", "", ""]]),
              "", "Container-hours are sandbox time taken from each stage's records: clean-suite and candidate "
              "test runs and image builds (synthetic), validation (real), episodes (rollout).", ""]
    return parts


def _card_files(data: dict) -> list[str]:
    """The files of the build and the config."""
    cfg = data["config"]
    parts: list[str] = []
    parts += ["## Files", "",
              "- `tasks/tasks.jsonl`, `tasks/dataset/`: swebench rows (the official harness grades them unmodified) "
              "plus `source`, `strategy`, `metadata`.",
              "- `trajectories/trajectories.jsonl`: every rollout; `trajectories/kept/`: the kept ones, split by "
              "outcome, and `dropped.jsonl` with the reason for each other one.",
              "- `sft/`: training files; `card.json`: every number of this card; `config.yaml`: the build config.",
              "", "```python", "from datasets import load_dataset", "",
              'tasks = load_dataset("json", data_files="tasks/tasks.jsonl", split="train")',
              'kept = load_dataset("json", data_files="trajectories/kept/kept.jsonl", split="train")', "```", ""]
    parts += ["## Config", "", "```yaml", yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True).rstrip(), "```", ""]
    return parts


def render_card(data: dict) -> str:
    """README.md of the build: front matter and the sections, each from `data` (card_data)."""
    parts: list[str] = []
    for section in (_card_intro, _card_funnel, _card_groups, _card_environments, _card_difficulty, _card_filter,
                    _card_sft, _card_cost, _card_files):
        parts += section(data)
    return "\n".join(parts)


def write_card(out: Path, cfg, states: dict) -> dict:
    """card.json, plots/*.png and README.md in `out`; returns the card data."""
    data = card_data(out, cfg, states)
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    plot_difficulty(data, plots / "difficulty.png")
    plot_resolve_rate(data, plots / "resolve_by_difficulty.png")
    (out / "card.json").write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "README.md").write_text(render_card(data), encoding="utf-8")
    return data


__all__ = ["card_data", "render_card", "write_card", "plot_difficulty", "plot_resolve_rate", "front_matter"]
