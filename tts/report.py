"""The TTS report: `report.json` (everything), `report.md` (for people) and `tts_at_k.png`
(TTS@k vs k beside oracle Pass@k, random pick and majority vote, with 95% intervals)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PLOT_FILE = "tts_at_k.png"
SERIES = (("tts", "verifier pick (TTS@k)"), ("oracle", "oracle Pass@k"), ("majority", "majority vote"),
          ("random", "random pick"))


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def _stat(st: dict | None) -> str:
    if not st or st.get("value") is None:
        return "n/a"
    lo, hi = st["ci"]
    if lo is None:
        return _pct(st["value"])
    return f"{_pct(st['value'])} [{_pct(lo)}, {_pct(hi)}]"


def plot(result: dict, path: Path) -> Path | None:
    """TTS@k vs k (log2 axis) beside the baselines; None when there is nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = result.get("metrics") or {}
    ks = result.get("ks") or []
    if not ks or "tts" not in m:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for key, label in SERIES:
        vals = [100 * m[key][str(k)]["value"] for k in ks]
        lo = [100 * m[key][str(k)]["ci"][0] for k in ks]
        hi = [100 * m[key][str(k)]["ci"][1] for k in ks]
        style = {"tts": "-o", "oracle": "--s", "majority": "-.^", "random": ":"}[key]
        line, = ax.plot(ks, vals, style, label=label, linewidth=2 if key == "tts" else 1.3)
        ax.fill_between(ks, lo, hi, color=line.get_color(), alpha=0.12 if key == "tts" else 0.06)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("k (samples per instance)")
    ax.set_ylabel("resolved (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    title = f"TTS@k, {result['instances']} instances, policy={result['policy']}"
    if result.get("demo"):
        title += "\npipeline demonstration (oracle policy with noise), not a model result"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def markdown(result: dict) -> str:
    m = result.get("metrics") or {}
    ks = result.get("ks") or []
    sel = result["selected"]
    g = result["grading"]
    lines = ["# Test-time scaling report", ""]
    vc = result.get("verifier_check") or {}
    if vc.get("status") == "overlap":
        lines += [f"> **WARNING: the verifier (`{vc['verifier']}`) was trained on {len(vc['overlap'])} of the scored "
                  "instances.** Its TTS@k and AUC are not held-out results. Overlap: "
                  + ", ".join(f"`{i}`" for i in vc["overlap"][:20]) + (" ..." if len(vc["overlap"]) > 20 else ""), ""]
    if result.get("demo"):
        lines += ["> **Pipeline demonstration**: samples come from `policy=oracle` (the gold patch, corrupted",
                  "> at random), not from a model. The numbers show the pipeline works, nothing more.", ""]
    lines += [
        f"- run: `{result['dir']}`; policy: `{result['policy']}`; predictions as `{result['model_name_or_path']}`",
        f"- {result['instances']} instances with samples (of {result['tasks']} tasks), {result['samples']} samples",
        f"- selected patches graded by the official swebench harness: {sel['graded']}/{sel['instances']}, "
        f"resolved {sel['resolved']} ({_pct(sel['resolve_rate'])}%)",
        f"- official gradings: {g['requested']} needed, {g['reused']} reused, {g['graded_now']} graded now"
        + (f", {len(g['failed_runs'])} harness runs failed" if g["failed_runs"] else ""),
        "- labels: " + ", ".join(f"{v} {k}" for k, v in sorted(result["labels"].items()))
        + "; in the metrics: " + (", ".join(f"{v} {k}" for k, v in sorted(result.get("metric_labels", {}).items()))
                                  or "none") + " (official = swebench harness, sandbox = the rollout's own grading)",
        "- verifier vs scored instances: " + {"disjoint": f"disjoint (trained on {vc.get('trained_instances')} "
                                                          "other instances)",
                                              "overlap": f"**overlap: {len(vc.get('overlap', []))}**"}.get(
            vc.get("status"), f"unknown ({vc.get('why', 'not checked')})"),
        "",
    ]
    if m:
        w = m.get("within_instance_auc") or {}
        lines += [f"Pass@1 (mean over samples): **{_stat(m['pass@1'])}**; verifier AUC pooled: **{_stat(m['auc'])}**, "
                  f"within instance: **{_stat(w)}** ({w.get('instances', 0)} instances with both outcomes); "
                  f"ECE: **{_stat(m.get('ece'))}** (resolved %, 95% bootstrap interval over instances; AUC and ECE "
                  f"as fractions x100; {m['instances']} instances, unusable ones unresolved)", "",
                  "| k | TTS@k (verifier) | oracle Pass@k | majority vote | random pick | instances with < k samples |",
                  "|---:|---|---|---|---|---:|"]
        for k in ks:
            s = str(k)
            lines.append(f"| {k} | {_stat(m['tts'][s])} | {_stat(m['oracle'][s])} | {_stat(m['majority'][s])} | "
                         f"{_stat(m['random'][s])} | {m['short_instances'][s]} |")
        lines += ["", f"![TTS@k]({PLOT_FILE})", ""]
        if result.get("dropped_ks"):
            lines += [f"k dropped (more than any instance's samples): {result['dropped_ks']}", ""]
    else:
        lines += ["No labelled samples: no metrics.", ""]
    unusable = result.get("unusable_instances") or {}
    if unusable:
        lines += [f"## Instances without a usable sample ({len(unusable)}, counted unresolved)", ""]
        lines += [f"- `{iid}`: {why}" for iid, why in list(unusable.items())[:100]]
        lines += ([f"- ... and {len(unusable) - 100} more (report.json)"] if len(unusable) > 100 else []) + [""]
    inp = result["input"]
    lines += ["## Input problems (counted, skipped)", "",
              "| what | count |", "|---|---:|"]
    for key in ("bad_task_lines", "bad_sample_lines", "samples_of_unknown_instances", "duplicate_samples",
                "empty_patches", "bad_score_lines", "scores_for_unknown_samples", "duplicate_scores",
                "unscored_samples", "unlabelled_samples", "instances_without_samples"):
        lines.append(f"| {key.replace('_', ' ')} | {inp[key]} |")
    if inp.get("unknown_instance_ids"):
        lines += ["", "Unknown instance ids: " + ", ".join(f"`{i}`" for i in inp["unknown_instance_ids"])]
    if inp.get("examples"):
        lines += ["", "First problems:", ""] + [f"- `{e}`" for e in inp["examples"]]
    lines += ["", "## Definitions", "",
              "- Pass@1: mean label over an instance's samples. Oracle Pass@k: 1 - C(n-c,k)/C(n,k).",
              "- TTS@k: expected label of the top-scored of k samples drawn without replacement "
              "(exact, ties uniform); the verifier score is P(YES).",
              "- Majority vote: the largest cluster of identical non-empty patches among k draws "
              "(enumerated, or Monte Carlo when C(n,k) is large). Random pick: c/n for every k.",
              "- Empty patches count as unresolved; unscored samples rank last; an instance without a usable "
              "(labelled) sample is unresolved in every metric.",
              "- AUC pooled: over all scored samples. Within instance: the mean AUC over instances with both "
              "resolved and unresolved samples (what selection needs). ECE: 10 equal-width bins of P(YES)."]
    return "\n".join(lines) + "\n"


def write_report(result: dict[str, Any], root: Path) -> None:
    root = Path(root)
    png = plot(result, root / PLOT_FILE)
    result["plot"] = str(png) if png else None
    (root / "report.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (root / "report.md").write_text(markdown(result), encoding="utf-8")
