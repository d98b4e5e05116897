"""TTS metrics against brute-force enumeration of every k-subset on small cases, and the
bootstrap intervals around them."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from tts.metrics import (
    Sample,
    bootstrap_ci,
    majority_at_k,
    pass_at_k,
    patch_key,
    random_at_k,
    summarize,
    tts_at_k,
)
from verifier.score import roc_auc


def _subsets(n, k):
    return list(itertools.combinations(range(n), k))


def brute_pass_at_k(labels, k):
    subs = _subsets(len(labels), k)
    return sum(any(labels[i] for i in s) for s in subs) / len(subs)


def brute_tts(scores, labels, k):
    key = [-math.inf if s is None else s for s in scores]
    total = 0.0
    subs = _subsets(len(labels), k)
    for sub in subs:
        best = max(key[i] for i in sub)
        tied = [labels[i] for i in sub if key[i] == best]
        total += sum(tied) / len(tied)
    return total / len(subs)


def brute_majority(keys, labels, k):
    total = 0.0
    subs = _subsets(len(labels), k)
    for sub in subs:
        pool = [i for i in sub if keys[i]] or list(sub)
        counts = {}
        for i in pool:
            counts.setdefault(keys[i], []).append(labels[i])
        top = max(len(v) for v in counts.values())
        winners = [v for v in counts.values() if len(v) == top]
        total += sum(sum(v) / len(v) for v in winners) / len(winners)
    return total / len(subs)


def _cases(seed, count=60):
    rng = random.Random(seed)
    for _ in range(count):
        n = rng.randint(1, 8)
        labels = [rng.random() < 0.4 for _ in range(n)]
        # coarse scores make ties common; some samples unscored
        scores = [None if rng.random() < 0.1 else rng.choice([0.1, 0.3, 0.5, 0.7, 0.9]) for _ in range(n)]
        keys = [rng.choice(["", "a", "b", "c"]) for _ in range(n)]
        yield n, labels, scores, keys


def test_pass_at_k_matches_enumeration():
    for n, labels, _, _ in _cases(1):
        for k in range(1, n + 1):
            assert pass_at_k(n, sum(labels), k) == pytest.approx(brute_pass_at_k(labels, k))


def test_tts_at_k_closed_form_matches_enumeration_with_ties_and_unscored():
    for n, labels, scores, _ in _cases(2):
        for k in range(1, n + 1):
            assert tts_at_k(scores, labels, k) == pytest.approx(brute_tts(scores, labels, k))


def test_tts_at_k_limits():
    labels = [False, True, False, False]
    scores = [0.2, 0.9, 0.4, 0.1]
    assert tts_at_k(scores, labels, 1) == pytest.approx(0.25)  # one draw: the mean label
    assert tts_at_k(scores, labels, 4) == pytest.approx(1.0)  # all drawn: the top score wins
    assert tts_at_k([0.9, 0.2, 0.4, 0.1], labels, 4) == pytest.approx(0.0)  # a misled verifier
    assert tts_at_k(scores, labels, 10) == tts_at_k(scores, labels, 4)  # k > n uses all samples


def test_majority_vote_matches_enumeration_and_monte_carlo_is_close():
    for n, labels, _, keys in _cases(3):
        for k in range(1, n + 1):
            assert majority_at_k(keys, labels, k) == pytest.approx(brute_majority(keys, labels, k))
    keys = ["a"] * 5 + ["b"] * 4 + ["c"] * 3 + [""] * 4
    labels = [True] * 5 + [False] * 11
    exact = brute_majority(keys, labels, 8)
    mc = majority_at_k(keys, labels, 8, max_enumerate=10, mc_samples=4000, seed=7)
    assert abs(mc - exact) < 0.03 and 0.1 < exact < 0.9


def test_patch_key_ignores_index_lines_and_trailing_space():
    a = "diff --git a/x b/x\nindex 111..222 100644\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b  \n"
    b = "diff --git a/x b/x\nindex 333..444 100644\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n"
    assert patch_key(a) == patch_key(b) and patch_key("  \n") == ""


def test_random_pick_is_the_mean_label():
    assert random_at_k([True, False, False, False], 3) == pytest.approx(0.25)


def test_auc_matches_pair_counting():
    rng = random.Random(4)
    for _ in range(30):
        n = rng.randint(2, 12)
        labels = [rng.random() < 0.5 for _ in range(n)]
        scores = [rng.choice([0.1, 0.2, 0.5, 0.8]) for _ in range(n)]
        pos = [s for s, y in zip(scores, labels, strict=True) if y]
        neg = [s for s, y in zip(scores, labels, strict=True) if not y]
        if not pos or not neg:
            assert roc_auc(scores, labels) is None
            continue
        pairs = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg)
        assert roc_auc(scores, labels) == pytest.approx(pairs / (len(pos) * len(neg)))


def test_bootstrap_intervals_bracket_the_estimates():
    rng = random.Random(5)
    instances = {}
    for i in range(40):
        n = 8
        labels = [rng.random() < 0.35 for _ in range(n)]
        scores = [min(1.0, max(0.0, (0.7 if y else 0.35) + rng.gauss(0, 0.2))) for y in labels]
        instances[f"i{i}"] = [Sample(y, s, f"p{rng.randint(0, 2)}" if rng.random() < 0.9 else "")
                              for y, s in zip(labels, scores, strict=True)]
    ks = [1, 2, 4, 8]
    rep = summarize(instances, ks, n_boot=500, seed=1)
    assert rep["instances"] == 40 and rep["samples"] == 320
    stats = [rep["pass@1"], rep["auc"]] + [rep[m][str(k)] for m in ("tts", "oracle", "random", "majority")
                                           for k in ks]
    for st in stats:
        lo, hi = st["ci"]
        assert lo <= st["value"] <= hi and hi - lo < 0.5
    assert rep["tts"]["1"]["value"] == pytest.approx(rep["pass@1"]["value"])
    # an informative verifier beats random picking, and never beats the oracle
    assert rep["tts"]["8"]["value"] > rep["random"]["8"]["value"]
    for k in ks:
        assert rep["tts"][str(k)]["value"] <= rep["oracle"][str(k)]["value"] + 1e-12
    assert rep["auc"]["value"] > 0.7
    assert bootstrap_ci([0.5] * 10) == (0.5, 0.5)
