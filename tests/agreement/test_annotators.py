"""Annotator quality (issue 10) against independent computations: Wilson intervals from
statsmodels, Cohen's κ from scikit-learn, medians and shares by hand."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.proportion import proportion_confint

from auditapp.agreement.annotators import (
    QualityThresholds,
    annotator_agreement,
    annotator_quality,
)

VERDICTS = ["correct", "error", "abstain"]


def _items(rng, evaluator, *, skill, n=60, gold=12, repeats=10):
    truth = rng.choice(["correct", "error"], size=n)
    verdicts = np.where(rng.random(n) < skill, truth, rng.choice(VERDICTS, size=n))
    rows = [
        {
            "evaluator": evaluator,
            "unit": i,
            "verdict": v,
            "is_gold": i < gold,
            "gold_verdict": truth[i] if i < gold else None,
            "is_repeat": False,
            "elapsed_ms": int(rng.integers(2000, 20000)),
        }
        for i, v in enumerate(verdicts)
    ]
    for i in range(gold, gold + repeats):
        again = truth[i] if rng.random() < skill else rng.choice(VERDICTS)
        rows.append({**rows[i], "verdict": again, "is_repeat": True, "elapsed_ms": 5000})
    return pd.DataFrame(rows)


def test_figures_match_independent_computations():
    rng = np.random.default_rng(21)
    items = pd.concat(
        [_items(rng, "good", skill=0.95), _items(rng, "poor", skill=0.4, n=90, gold=40)]
    )
    table = annotator_quality(items).set_index("evaluator")
    for who in ("good", "poor"):
        own = items[items["evaluator"] == who]
        gold = own[own["is_gold"]]
        hits = int((gold["verdict"] == gold["gold_verdict"]).sum())
        low, high = proportion_confint(hits, len(gold), method="wilson")
        row = table.loc[who]
        assert row["gold_accuracy"] == pytest.approx(hits / len(gold))
        assert (row["gold_ci_low"], row["gold_ci_high"]) == pytest.approx((low, high))
        first = own[~own["is_gold"] & ~own["is_repeat"]].set_index("unit")["verdict"]
        again = own[own["is_repeat"]].set_index("unit")["verdict"]
        pair_first = first.loc[again.index]
        assert row["repeat_pairs"] == len(again)
        assert row["repeat_agreement"] == pytest.approx((pair_first == again).mean())
        if row["repeat_kappa"] is not None:
            assert row["repeat_kappa"] == pytest.approx(cohen_kappa_score(pair_first, again))
        assert row["median_seconds"] == pytest.approx(np.median(own["elapsed_ms"]) / 1000)
        regular = own[~own["is_gold"]]
        assert row["abstain_share"] == pytest.approx((regular["verdict"] == "abstain").mean())
    assert table.loc["good", "flags"] == ""
    assert "gold: flag" in table.loc["poor", "flags"]


def test_a_short_gold_record_is_watched_not_flagged():
    # 3 of 4 gold items right: below 0.8, but the Wilson interval (0.30-0.95) still reaches it
    items = pd.DataFrame(
        {
            "evaluator": ["x"] * 4,
            "unit": [1, 2, 3, 4],
            "verdict": ["error", "error", "correct", "correct"],
            "is_gold": [True] * 4,
            "gold_verdict": ["error", "error", "correct", "error"],
            "is_repeat": [False] * 4,
            "elapsed_ms": [5000] * 4,
        }
    )
    row = annotator_quality(items).iloc[0]
    assert row["gold_accuracy"] == 0.75 and row["flags"] == "gold: watch"
    strict = annotator_quality(items, thresholds=QualityThresholds(gold_accuracy=0.7)).iloc[0]
    assert strict["flags"] == ""


def test_agreement_with_every_other_evaluator():
    rng = np.random.default_rng(22)
    units = np.arange(40)
    a = rng.choice(["correct", "error"], size=40)
    b = np.where(rng.random(40) < 0.8, a, rng.choice(["correct", "error"], size=40))
    experts = pd.DataFrame({"evaluator": "a", "unit": units, "verdict": a})
    others = pd.DataFrame(
        {
            "evaluator": ["a"] * 40 + ["judge"] * 40,
            "evaluator_kind": ["expert"] * 40 + ["judge"] * 40,
            "unit": np.r_[units, units],
            "verdict": np.r_[a, b],
        }
    )
    table = annotator_agreement(experts, others)
    assert list(table["other"]) == ["judge"]  # never against itself
    row = table.iloc[0]
    assert row["n_shared"] == 40 and row["other_kind"] == "judge"
    assert row["percent_agreement"] == pytest.approx((a == b).mean())
    assert row["kappa"] == pytest.approx(cohen_kappa_score(a, b))


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match="gold_verdict"):
        annotator_quality(pd.DataFrame({"evaluator": [], "unit": [], "verdict": []}))
