"""Hedging language per condition: the lexicon, and the rates against a direct count."""

import numpy as np
import pandas as pd
import pytest

from auditapp.agreement.hedging import (
    HEDGING_LEXICON_VERSION,
    hedging_flags,
    hedging_language_rates,
)


@pytest.mark.parametrize(
    ("text", "hedged"),
    [
        ("It is probably a viral infection.", True),
        ("I’m not sure about the dose.", True),
        ("This COULD   BE sepsis.", True),
        ("We cannot rule out a bleed.", True),
        ("The likelihood ratio is 3.", False),  # 'likely' only as a whole word
        ("Mayberry scale is normal.", False),
        ("The dose is 5 mg.", False),
        ("", False),
    ],
)
def test_lexicon_matches_whole_words_and_phrases(text, hedged):
    assert hedging_flags([text]) == [hedged]


def test_audit_additions_extend_the_lexicon():
    # given / when / then
    assert hedging_flags(["Borderline result."]) == [False]
    assert hedging_flags(["Borderline result."], extra_terms=["borderline"]) == [True]


def _texts(rng, *, traces, steps, shares):
    rows = []
    for condition, share in shares.items():
        for t in range(traces):
            for _ in range(steps):
                text = "Maybe this is B." if rng.random() < share else "The answer is B."
                rows.append({"trace_id": f"{condition}{t}", "condition": condition, "text": text})
    return pd.DataFrame(rows)


def test_rates_equal_a_direct_count_with_intervals():
    # given
    texts = _texts(np.random.default_rng(0), traces=60, steps=5, shares={"A": 0.1, "B": 0.4})
    # when
    section = hedging_language_rates(texts, rng=np.random.default_rng(1), resamples=500)
    # then
    assert section["lexicon"]["version"] == HEDGING_LEXICON_VERSION
    for row in section["rows"]:
        part = texts[texts["condition"] == row["condition"]]
        direct = part["text"].str.startswith("Maybe")
        assert row["n_steps"] == len(part) and row["n_hedged"] == direct.sum()
        assert row["rate"] == pytest.approx(direct.mean())
        assert row["ci_low"] < row["rate"] < row["ci_high"]
        assert row["interval_method"].startswith("cluster bootstrap")


def test_few_traces_take_the_small_sample_rule():
    # given: no hedge in 8 steps of 2 traces
    texts = _texts(np.random.default_rng(0), traces=2, steps=4, shares={"A": 0.0})
    # when
    (row,) = hedging_language_rates(texts, rng=np.random.default_rng(1), resamples=100)["rows"]
    # then
    assert row["rate"] == 0.0 and row["ci_low"] == 0.0 and row["ci_high"] > 0.3
    assert row["interval_method"].startswith("Wilson")


def test_no_texts_no_section():
    assert hedging_language_rates(pd.DataFrame(), rng=np.random.default_rng(0)) is None
