"""Test-time-scaling metrics over n graded, verifier-scored samples per instance.

Per instance with n samples of which c are resolved (each metric is then averaged over
instances, and every figure carries a 95% percentile-bootstrap interval over instances):

- Pass@1: c / n, the expected result of submitting one sample.
- oracle Pass@k: 1 - C(n-c, k) / C(n, k), the unbiased estimate of "at least one of k
  samples drawn without replacement is resolved" (an upper bound for any selector).
- TTS@k: the expected result of submitting the top-scored of k samples drawn uniformly
  without replacement (ties broken uniformly). Computed exactly in closed form rather than
  by enumeration or Monte Carlo: with samples grouped by equal score, a group G with h
  samples scored above it holds the top of a random k-subset with probability
  [C(n-h, k) - C(n-h-|G|, k)] / C(n, k), and then each of its drawn members is equally
  likely to be picked, so it contributes the mean label of G. The tests check this against
  brute-force enumeration of all subsets. Unscored samples rank below every scored one.
- random@k: a uniformly random pick among k draws; its expectation is c / n for every k.
- majority@k: among k draws, the largest cluster of identical non-empty patches (see
  `patch_key`) wins, ties broken uniformly; all-empty draws submit an empty patch. Exact by
  enumerating the C(n, k) subsets when there are at most `max_enumerate` of them, otherwise
  the mean over `mc_samples` seeded random subsets (Monte Carlo).
- AUC: ROC AUC of the verifier's scores against the labels, pooled over all scored samples.
  Pooled AUC rewards a verifier that only tells easy instances from hard ones.
- within-instance AUC: the ranking selection needs. ROC AUC over one instance's scored samples,
  averaged over the instances that have both resolved and unresolved scored samples (the others
  cannot be ranked wrongly); its interval resamples those instances.
- ECE: expected calibration error of P(YES) as a probability, pooled over scored samples, in
  `ece_bins` equal-width bins: sum over bins of (share of samples) x |resolved rate - mean score|.

Every instance given counts, SWE-bench's convention: an instance without samples, or without a
usable (labelled) sample, is unresolved in every resolve metric (Pass@1, TTS@k, oracle, majority,
random) and is listed in `unusable_instances`; it has no samples to enter AUC or ECE.
An instance with fewer than k samples uses all of its samples for that k (counted as short).
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from verifier.score import roc_auc


@dataclass(frozen=True)
class Sample:
    """One rollout sample as the metrics see it."""

    resolved: bool
    score: float | None = None  # verifier P(YES); None when unscored
    patch: str = ""


def patch_key(patch: str) -> str:
    """A patch normalised for identity: `index` lines and trailing whitespace dropped."""
    lines = [ln.rstrip() for ln in patch.splitlines() if not ln.startswith("index ")]
    return "\n".join(lines).strip()


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of P(at least one resolved among k of n samples, c of them resolved)."""
    k = min(k, n)
    if n <= 0:
        return 0.0
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def tts_at_k(scores: Sequence[float | None], labels: Sequence[bool], k: int) -> float:
    """Expected label of the top-scored sample among k drawn without replacement (exact)."""
    n = len(labels)
    if n == 0:
        return 0.0
    k = min(k, n)
    keyed = [(-math.inf if s is None else float(s), bool(y)) for s, y in zip(scores, labels, strict=True)]
    groups: dict[float, list[bool]] = {}
    for s, y in keyed:
        groups.setdefault(s, []).append(y)
    total = math.comb(n, k)
    higher = 0
    value = 0.0
    for s in sorted(groups, reverse=True):
        members = groups[s]
        rest = n - higher
        p_top = (math.comb(rest, k) - math.comb(rest - len(members), k)) / total
        value += p_top * (sum(members) / len(members))
        higher += len(members)
    return value


def random_at_k(labels: Sequence[bool], k: int) -> float:
    """Expected label of a uniformly random pick among k draws: the mean label, for any k."""
    return sum(map(bool, labels)) / len(labels) if labels else 0.0


def _majority_pick(keys: Sequence[str], labels: Sequence[bool]) -> float:
    """Expected label of the majority-vote pick of one draw (ties between clusters uniform)."""
    nonempty = [i for i, key in enumerate(keys) if key]
    pool = nonempty or list(range(len(keys)))
    counts = Counter(keys[i] for i in pool)
    top = max(counts.values())
    winners = [key for key, c in counts.items() if c == top]
    value = 0.0
    for key in winners:
        members = [labels[i] for i in pool if keys[i] == key]
        value += sum(members) / len(members)
    return value / len(winners)


def majority_at_k(keys: Sequence[str], labels: Sequence[bool], k: int, *, max_enumerate: int = 20000,
                  mc_samples: int = 2000, seed: int = 0) -> float:
    """Expected label of the majority-vote pick among k drawn without replacement."""
    n = len(labels)
    if n == 0:
        return 0.0
    k = min(k, n)
    if math.comb(n, k) <= max_enumerate:
        subsets = itertools.combinations(range(n), k)
        values = [_majority_pick([keys[i] for i in sub], [labels[i] for i in sub]) for sub in subsets]
    else:
        rng = random.Random(seed)
        values = []
        for _ in range(mc_samples):
            sub = rng.sample(range(n), k)
            values.append(_majority_pick([keys[i] for i in sub], [labels[i] for i in sub]))
    return sum(values) / len(values)


def bootstrap_ci(values: Sequence[float], *, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-instance `values`."""
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def _stat(values: Sequence[float], n_boot: int, seed: int) -> dict:
    lo, hi = bootstrap_ci(values, n_boot=n_boot, seed=seed)
    return {"value": float(np.mean(values)) if len(values) else math.nan, "ci": [lo, hi]}


def auc_with_ci(per_instance: list[list[Sample]], *, n_boot: int = 1000, seed: int = 0) -> dict:
    """Pooled verifier AUC, with an interval from resampling instances."""

    def pooled(groups: list[list[Sample]]) -> float | None:
        pairs = [(s.score, s.resolved) for g in groups for s in g if s.score is not None]
        return roc_auc([p[0] for p in pairs], [p[1] for p in pairs]) if pairs else None

    value = pooled(per_instance)
    if value is None:
        return {"value": None, "ci": [None, None]}
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(per_instance), size=len(per_instance))
        b = pooled([per_instance[i] for i in idx])
        if b is not None:
            boots.append(b)
    if not boots:
        return {"value": value, "ci": [value, value]}
    return {"value": value, "ci": [float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))]}


def within_instance_auc(per_instance: list[list[Sample]], *, n_boot: int = 1000, seed: int = 0) -> dict:
    """Mean per-instance AUC over the instances with both classes among their scored samples."""
    aucs = []
    for g in per_instance:
        pairs = [(s.score, s.resolved) for s in g if s.score is not None]
        a = roc_auc([p[0] for p in pairs], [p[1] for p in pairs]) if pairs else None
        if a is not None:
            aucs.append(a)
    if not aucs:
        return {"value": None, "ci": [None, None], "instances": 0}
    return {**_stat(aucs, n_boot, seed), "instances": len(aucs)}


def expected_calibration_error(scores: Sequence[float], labels: Sequence[bool], bins: int = 10) -> float | None:
    """ECE of probabilities `scores` against `labels` in `bins` equal-width bins (1.0 in the last)."""
    if not scores:
        return None
    s = np.clip(np.asarray(scores, dtype=float), 0.0, 1.0)
    y = np.asarray(labels, dtype=float)
    idx = np.minimum((s * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            total += sel.mean() * abs(y[sel].mean() - s[sel].mean())
    return float(total)


def ece_with_ci(per_instance: list[list[Sample]], *, bins: int = 10, n_boot: int = 1000, seed: int = 0) -> dict:
    """Pooled ECE with an interval from resampling instances."""

    def pooled(groups: list[list[Sample]]) -> float | None:
        pairs = [(s.score, s.resolved) for g in groups for s in g if s.score is not None]
        return expected_calibration_error([p[0] for p in pairs], [p[1] for p in pairs], bins)

    value = pooled(per_instance)
    if value is None:
        return {"value": None, "ci": [None, None], "bins": bins}
    rng = np.random.default_rng(seed)
    boots = [b for b in (pooled([per_instance[i] for i in rng.integers(0, len(per_instance), len(per_instance))])
                         for _ in range(n_boot)) if b is not None]
    lo, hi = (float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))) if boots else (value, value)
    return {"value": value, "ci": [lo, hi], "bins": bins}


def summarize(instances: dict[str, list[Sample]], ks: Sequence[int], *, n_boot: int = 1000, seed: int = 0,
              max_enumerate: int = 20000, mc_samples: int = 2000, ece_bins: int = 10) -> dict:
    """Every metric of the module docstring, per k, with bootstrap intervals over instances.
    `instances` holds every instance scored, with its usable samples (an empty list: unresolved)."""
    ids = sorted(instances)
    groups = [instances[i] for i in ids]
    labels = [[s.resolved for s in g] for g in groups]
    out: dict = {"instances": len(ids), "samples": sum(len(g) for g in groups),
                 "unusable_instances": [i for i, g in zip(ids, groups, strict=True) if not g],
                 "samples_per_instance": {"min": min((len(g) for g in groups), default=0),
                                          "max": max((len(g) for g in groups), default=0)},
                 "ks": list(ks)}
    out["pass@1"] = _stat([random_at_k(y, 1) for y in labels], n_boot, seed)
    per_k: dict[str, Callable[[list[Sample], list[bool], int], float]] = {
        "tts": lambda g, y, k: tts_at_k([s.score for s in g], y, k),
        "oracle": lambda g, y, k: pass_at_k(len(y), sum(y), k),
        "random": lambda g, y, k: random_at_k(y, k),
        "majority": lambda g, y, k: majority_at_k([patch_key(s.patch) for s in g], y, k,
                                                  max_enumerate=max_enumerate, mc_samples=mc_samples,
                                                  seed=seed),
    }
    for name, fn in per_k.items():
        out[name] = {str(k): _stat([fn(g, y, k) for g, y in zip(groups, labels, strict=True)], n_boot, seed)
                     for k in ks}
    out["short_instances"] = {str(k): sum(1 for g in groups if len(g) < k) for k in ks}
    out["majority_method"] = {
        str(k): ("enumeration" if all(math.comb(len(g), min(k, len(g))) <= max_enumerate for g in groups)
                 else f"monte carlo ({mc_samples} subsets where C(n,k) > {max_enumerate})") for k in ks}
    out["auc"] = auc_with_ci(groups, n_boot=n_boot, seed=seed)
    out["within_instance_auc"] = within_instance_auc(groups, n_boot=n_boot, seed=seed)
    out["ece"] = ece_with_ci(groups, bins=ece_bins, n_boot=n_boot, seed=seed)
    return out
