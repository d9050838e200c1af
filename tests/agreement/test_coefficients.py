"""Agreement coefficients checked against published worked examples and independent libraries.

Sources of the published numbers:

* Krippendorff, K. (2011). *Computing Krippendorff's Alpha-Reliability*, section E: 4 coders x
  12 units with gaps; alpha nominal .743, ordinal .815, interval .849, ratio .797.
* Fleiss, J. L. (1971), via Wikipedia "Fleiss' kappa": 10 subjects x 14 raters x 5 categories,
  P-bar = 0.378, P-bar_e = 0.213, kappa = 0.210.
* Wikipedia "Cohen's kappa": 50 grant proposals, p_o = 0.7, p_e = 0.5, kappa = 0.4.
* Gwet, K. L. (2014) *Handbook of Inter-Rater Reliability*, 4th ed., as printed in the
  vignette of his R package irrCAC (1.0): ``cont3x3abstractors`` (100 pregnancies, 2
  abstractors): Cohen's kappa 0.7964094 with SE 0.05891072, AC1 0.8493305, percent agreement
  0.89; ``cac.raw4raters`` (the Krippendorff data above): percent agreement 0.8181818,
  Fleiss' kappa 0.76117 (p_e 0.2387153), AC1 0.77544 (p_e 0.1903212), alpha 0.74342.
"""

import math

import krippendorff
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from statsmodels.stats.inter_rater import cohens_kappa as sm_cohens_kappa
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss_kappa

from auditapp.agreement.coefficients import (
    KappaResult,
    agreement_summary,
    cohen_kappa,
    confusion_matrix,
    fleiss_kappa,
    gwet_ac1,
    krippendorff_2011_example,
    krippendorff_alpha,
    multi_rater_agreement,
    pairwise_agreement,
    percent_agreement,
)

NAN = np.nan
KRIPPENDORFF_MATRIX = np.array(
    [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
        [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
    ]
)

# Fleiss (1971) as on Wikipedia: rows are subjects, columns the number of the 14 raters who
# put the subject in each of 5 categories.
FLEISS_1971_COUNTS = np.array(
    [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
)

# Wikipedia, Cohen's kappa: rows = reader A (yes, no), columns = reader B (yes, no).
PROPOSALS_2X2 = np.array([[20, 5], [10, 15]])

# irrCAC::cont3x3abstractors (Gwet 2014): rows = abstractor 1, columns = abstractor 2.
ABSTRACTORS_3X3 = np.array([[13, 0, 0], [0, 20, 7], [0, 4, 56]])
ABSTRACTORS_LABELS = ["Ectopic", "AIU", "NIU"]


def long_from_matrix(matrix: np.ndarray) -> pd.DataFrame:
    """Raters x units matrix (NaN = missing) -> long table, missing cells kept as NaN rows."""
    raters, units = np.indices(matrix.shape)
    return pd.DataFrame({"unit": units.ravel(), "rater": raters.ravel(), "value": matrix.ravel()})


def long_from_counts(counts: np.ndarray) -> pd.DataFrame:
    """Subjects x categories counts -> long table with made-up rater ids within subject."""
    rows = []
    for subject, row in enumerate(counts):
        categories = np.repeat(np.arange(len(row)), row)
        rows += [(subject, f"r{k}", f"c{c}") for k, c in enumerate(categories)]
    return pd.DataFrame(rows, columns=["unit", "rater", "value"])


def long_from_table(table: np.ndarray, labels: list[str], raters=("A", "B")) -> pd.DataFrame:
    """Two-rater contingency table -> long table, one unit per counted pair."""
    rows = []
    unit = 0
    for i, a in enumerate(labels):
        for j, b in enumerate(labels):
            for _ in range(int(table[i, j])):
                rows += [(unit, raters[0], a), (unit, raters[1], b)]
                unit += 1
    return pd.DataFrame(rows, columns=["unit", "rater", "value"])


# ----------------------------------------------------------------------- Krippendorff's alpha


@pytest.mark.parametrize(
    ("level", "published"),
    [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849), ("ratio", 0.797)],
    ids=["nominal", "ordinal", "interval", "ratio"],
)
def test_krippendorff_alpha_reproduces_krippendorff_2011(level, published):
    # given Krippendorff's reliability data as a long table with NaN for the gaps
    data = long_from_matrix(KRIPPENDORFF_MATRIX)

    # when
    alpha = krippendorff_alpha(data, level=level)

    # then the published value, and the krippendorff package on the raw matrix
    assert round(alpha, 3) == published
    assert alpha == pytest.approx(
        krippendorff.alpha(reliability_data=KRIPPENDORFF_MATRIX, level_of_measurement=level)
    )


def test_krippendorff_example_table_matches_the_matrix():
    # given / when
    table = krippendorff_2011_example()

    # then the bundled example is the same data without the missing cells
    expected = long_from_matrix(KRIPPENDORFF_MATRIX).dropna()
    assert len(table) == len(expected) == 41
    assert krippendorff_alpha(table) == pytest.approx(krippendorff_alpha(expected))


def test_krippendorff_alpha_ordinal_with_labels_uses_value_order():
    # given the same data with the 1-5 scale written as words
    words = ["none", "low", "mid", "high", "top"]
    data = long_from_matrix(KRIPPENDORFF_MATRIX).dropna()
    as_words = data.assign(value=[words[int(v) - 1] for v in data["value"]])

    # when
    alpha = krippendorff_alpha(as_words, level="ordinal", value_order=words)

    # then it equals the numeric ordinal alpha
    assert alpha == pytest.approx(0.8153875, abs=1e-6)


def test_krippendorff_alpha_orders_numbers_written_as_text_numerically():
    # given values 9 and 10 as text, where text order would put "10" before "9"
    data = pd.DataFrame(
        {
            "unit": [1, 1, 2, 2, 3, 3],
            "rater": list("ababab"),
            "value": ["9", "9", "10", "9", "1", "1"],
        }
    )
    numeric = data.assign(value=data["value"].astype(int))

    # when / then
    assert krippendorff_alpha(data, level="ordinal") == pytest.approx(
        krippendorff_alpha(numeric, level="ordinal")
    )


def test_krippendorff_alpha_is_nan_when_all_pairable_values_agree_on_one_value():
    # given
    data = pd.DataFrame({"unit": [1, 1, 2], "rater": list("aba"), "value": ["x", "x", "y"]})

    # when / then
    assert math.isnan(krippendorff_alpha(data))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"level": "ordered"}, "level must be one of"),
        ({"level": "ordinal"}, "needs value_order"),
        ({"level": "interval"}, "needs numeric values"),
        ({"level": "ratio", "value_order": ["x", "y"]}, "value_order applies to nominal"),
        ({"value_order": ["x"]}, "'y' are not among the categories 'x'"),
    ],
    ids=["unknown-level", "ordinal-without-order", "interval-text", "ratio-order", "unknown"],
)
def test_krippendorff_alpha_rejects_bad_options(kwargs, message):
    # given text categories
    data = pd.DataFrame({"unit": [1, 1, 2, 2], "rater": list("abab"), "value": list("xyyy")})

    # when / then
    with pytest.raises(ValueError, match=message):
        krippendorff_alpha(data, **kwargs)


# ----------------------------------------------------------------------- Fleiss' kappa


def test_fleiss_kappa_reproduces_fleiss_1971_and_statsmodels():
    # given Fleiss' 10 subjects x 14 raters
    data = long_from_counts(FLEISS_1971_COUNTS)

    # when
    kappa = fleiss_kappa(data)

    # then Wikipedia's 0.210 and statsmodels on the count table
    assert round(kappa, 3) == 0.210
    assert kappa == pytest.approx(sm_fleiss_kappa(FLEISS_1971_COUNTS, method="fleiss"))
    assert percent_agreement(data) == pytest.approx(0.378, abs=5e-4)


@pytest.mark.parametrize("seed", [0, 1, 2], ids=["seed0", "seed1", "seed2"])
def test_fleiss_kappa_equals_statsmodels_on_complete_random_tables(seed):
    # given 40 units each rated by the same 5 raters into 4 categories
    rng = np.random.default_rng(seed)
    matrix = rng.choice(4, size=(5, 40), p=[0.4, 0.3, 0.2, 0.1]).astype(float)
    counts = np.stack([(matrix == k).sum(axis=0) for k in range(4)], axis=1)

    # when
    kappa = fleiss_kappa(long_from_matrix(matrix))

    # then
    assert kappa == pytest.approx(sm_fleiss_kappa(counts))


def test_multi_rater_coefficients_reproduce_irrcac_on_missing_data():
    # given Krippendorff's data (irrCAC's cac.raw4raters), some units rated by 1-3 coders
    data = krippendorff_2011_example()

    # when
    pa = percent_agreement(data)
    kappa = fleiss_kappa(data)
    ac1 = gwet_ac1(data)

    # then the values printed in the irrCAC vignette (Gwet 2014)
    assert pa == pytest.approx(0.8181818, abs=1e-7)
    assert kappa == pytest.approx(0.76117, abs=5e-6)
    assert ac1 == pytest.approx(0.77544, abs=5e-6)
    # and the chance agreements behind them, recovered from the coefficients
    assert (pa - kappa) / (1 - kappa) == pytest.approx(0.2387153, abs=1e-7)
    assert (pa - ac1) / (1 - ac1) == pytest.approx(0.1903212, abs=1e-7)


def test_fleiss_kappa_is_nan_when_every_rating_is_one_category():
    # given
    data = pd.DataFrame({"unit": [1, 1, 2, 2], "rater": list("abab"), "value": ["x"] * 4})

    # when / then
    assert math.isnan(fleiss_kappa(data))
    assert percent_agreement(data) == 1.0


# ----------------------------------------------------------------------- Cohen's kappa


@pytest.mark.parametrize(
    ("table", "labels", "published_kappa"),
    [
        (PROPOSALS_2X2, ["yes", "no"], 0.4),
        (ABSTRACTORS_3X3, ABSTRACTORS_LABELS, 0.7964094),
    ],
    ids=["wikipedia-proposals", "gwet-abstractors"],
)
def test_cohen_kappa_reproduces_published_values_and_libraries(table, labels, published_kappa):
    # given
    data = long_from_table(table, labels)

    # when
    result = cohen_kappa(data)

    # then the published kappa, sklearn's kappa, and statsmodels' FCE-1969 SE and interval
    reference = sm_cohens_kappa(table)
    a = data[data["rater"] == "A"].sort_values("unit")["value"]
    b = data[data["rater"] == "B"].sort_values("unit")["value"]
    assert isinstance(result, KappaResult)
    assert result.n == table.sum()
    assert result.kappa == pytest.approx(published_kappa, abs=5e-8)
    assert result.kappa == pytest.approx(cohen_kappa_score(a, b))
    assert result.se == pytest.approx(reference.std_kappa)
    assert result.ci_low == pytest.approx(reference.kappa_low)
    assert result.ci_high == pytest.approx(reference.kappa_upp)


def test_cohen_kappa_standard_error_matches_gwet_published_value():
    # given irrCAC's cont3x3abstractors, whose SE Gwet (2014) prints as 0.05891072
    data = long_from_table(ABSTRACTORS_3X3, ABSTRACTORS_LABELS)

    # when
    result = cohen_kappa(data)

    # then
    assert result.se == pytest.approx(0.05891072, abs=5e-9)


def test_cohen_kappa_uses_only_units_both_raters_rated():
    # given rater B skipped unit 4 and rater A left unit 5 blank (NaN)
    data = pd.DataFrame(
        {
            "unit": [1, 1, 2, 2, 3, 3, 4, 5, 5],
            "rater": ["A", "B", "A", "B", "A", "B", "A", "A", "B"],
            "value": ["x", "x", "y", "y", "x", "y", "y", NAN, "x"],
        }
    )

    # when
    result = cohen_kappa(data)

    # then
    assert result.n == 3
    assert result.kappa == pytest.approx(cohen_kappa_score(["x", "y", "x"], ["x", "y", "y"]))


def test_cohen_kappa_interval_narrows_with_lower_confidence_level():
    # given
    data = long_from_table(PROPOSALS_2X2, ["yes", "no"])

    # when
    wide = cohen_kappa(data, confidence_level=0.99)
    narrow = cohen_kappa(data, confidence_level=0.80)

    # then
    assert wide.ci_low < narrow.ci_low < narrow.kappa < narrow.ci_high < wide.ci_high


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            pd.DataFrame({"unit": [1, 1, 1], "rater": list("abc"), "value": list("xxy")}),
            "exactly two raters",
        ),
        (
            pd.DataFrame({"unit": [1, 2], "rater": list("ab"), "value": list("xy")}),
            "share no unit",
        ),
        (
            pd.DataFrame({"unit": [1, 1, 1], "rater": list("aab"), "value": list("xyx")}),
            "row 1 repeats unit=1, rater='a'",
        ),
        (pd.DataFrame({"unit": [1], "rater": ["a"]}), "missing column\\(s\\) 'value'"),
    ],
    ids=["three-raters", "no-shared-unit", "duplicate-rating", "missing-column"],
)
def test_cohen_kappa_rejects_bad_input(data, message):
    # when / then
    with pytest.raises(ValueError, match=message):
        cohen_kappa(data)


def test_cohen_kappa_rejects_bad_confidence_level():
    # given
    data = long_from_table(PROPOSALS_2X2, ["yes", "no"])

    # when / then
    with pytest.raises(ValueError, match="confidence_level"):
        cohen_kappa(data, confidence_level=95)


# ----------------------------------------------------------------------- Gwet's AC1


def test_gwet_ac1_reproduces_gwet_abstractors_example():
    # given irrCAC's cont3x3abstractors (Gwet 2014: AC1 = 0.8493305)
    data = long_from_table(ABSTRACTORS_3X3, ABSTRACTORS_LABELS)

    # when
    ac1 = gwet_ac1(data)

    # then the published value and Gwet's (2008) two-rater formula worked by hand:
    # p_a = sum p_kk; pi_k = (p_k+ + p_+k) / 2; p_e = sum pi_k (1 - pi_k) / (q - 1)
    p = ABSTRACTORS_3X3 / ABSTRACTORS_3X3.sum()
    pi = (p.sum(axis=0) + p.sum(axis=1)) / 2
    p_e = (pi * (1 - pi)).sum() / 2
    by_hand = (np.trace(p) - p_e) / (1 - p_e)
    assert ac1 == pytest.approx(0.8493305, abs=5e-8)
    assert ac1 == pytest.approx(by_hand)


def test_gwet_ac1_counts_unused_categories_when_given():
    # given two raters who only ever used two of three verdicts
    data = long_from_table(PROPOSALS_2X2, ["correct", "error"])

    # when
    observed_only = gwet_ac1(data)
    full_scheme = gwet_ac1(data, categories=["correct", "error", "abstain"])

    # then q = 2 vs q = 3 in the chance term: pi = (0.55, 0.45, 0) -> sum pi (1 - pi) = 0.495,
    # p_e = 0.495 / 1 vs 0.495 / 2
    assert observed_only == pytest.approx((0.7 - 0.495) / (1 - 0.495))
    assert full_scheme == pytest.approx((0.7 - 0.2475) / (1 - 0.2475))


# ----------------------------------------------------------------------- percent, confusion


def test_percent_agreement_is_the_mean_share_of_agreeing_pairs():
    # given unit 1: x, x, y (2 of 6 ordered pairs agree); unit 2: y, y; unit 3: one rating
    data = pd.DataFrame(
        {"unit": [1, 1, 1, 2, 2, 3], "rater": list("abcabc"), "value": list("xxyyyx")}
    )

    # when / then: unit 3 has no pair and is left out
    assert percent_agreement(data) == pytest.approx((2 / 6 + 1) / 2)


def test_percent_agreement_needs_a_unit_with_two_ratings():
    # given
    data = pd.DataFrame({"unit": [1, 2], "rater": list("ab"), "value": list("xy")})

    # when / then
    with pytest.raises(ValueError, match="no unit has two or more ratings"):
        percent_agreement(data)


def test_confusion_matrix_matches_sklearn():
    # given
    data = long_from_table(ABSTRACTORS_3X3, ABSTRACTORS_LABELS, raters=("first", "second"))
    a = data[data["rater"] == "first"].sort_values("unit")["value"]
    b = data[data["rater"] == "second"].sort_values("unit")["value"]

    # when
    table = confusion_matrix(data, rater_a="first", rater_b="second", labels=ABSTRACTORS_LABELS)

    # then
    assert table.index.name == "first"
    assert table.columns.name == "second"
    assert list(table.index) == ABSTRACTORS_LABELS
    np.testing.assert_array_equal(table.to_numpy(), ABSTRACTORS_3X3)
    np.testing.assert_array_equal(
        table.to_numpy(), sk_confusion_matrix(a, b, labels=ABSTRACTORS_LABELS)
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rater_a": "A", "rater_b": "A"}, "the same rater"),
        ({"rater_a": "A", "rater_b": "Z"}, "rater\\(s\\) 'Z' not found"),
        ({"rater_a": "A", "rater_b": "B", "labels": ["yes"]}, "'no' are not among"),
    ],
    ids=["same-rater", "unknown-rater", "label-missing"],
)
def test_confusion_matrix_rejects_bad_arguments(kwargs, message):
    # given
    data = long_from_table(PROPOSALS_2X2, ["yes", "no"])

    # when / then
    with pytest.raises(ValueError, match=message):
        confusion_matrix(data, **kwargs)


# ----------------------------------------------------------------------- summary


def test_agreement_summary_for_many_raters_leaves_cohen_out():
    # given
    data = krippendorff_2011_example()

    # when
    summary = agreement_summary(data, level="ordinal")

    # then
    assert summary["cohen_kappa"] is None
    assert summary["krippendorff_alpha"] == pytest.approx(0.8153875, abs=1e-6)
    assert summary["fleiss_kappa"] == pytest.approx(0.76117, abs=5e-6)
    assert summary["gwet_ac1"] == pytest.approx(0.77544, abs=5e-6)
    assert summary["percent_agreement"] == pytest.approx(0.8181818, abs=1e-7)
    assert (summary["n_units"], summary["n_raters"], summary["n_ratings"]) == (12, 4, 41)


def test_agreement_summary_for_two_raters_with_custom_column_names():
    # given a researcher's table with their own column names and numeric rater ids
    data = long_from_table(PROPOSALS_2X2, ["yes", "no"], raters=(7, 9)).rename(
        columns={"unit": "proposal", "rater": "reader", "value": "decision"}
    )

    # when
    summary = agreement_summary(data, unit="proposal", rater="reader", value="decision")

    # then
    assert summary["cohen_kappa"] == pytest.approx(0.4)
    assert summary["cohen_kappa_ci_low"] < 0.4 < summary["cohen_kappa_ci_high"]
    assert summary["percent_agreement"] == pytest.approx(0.7)
    assert summary["n_units"] == 50


def test_agreement_summary_reports_undefined_coefficients_as_none():
    # given every rating in one category
    data = pd.DataFrame({"unit": [1, 1, 2, 2], "rater": list("abab"), "value": [3] * 4})

    # when
    summary = agreement_summary(data, level="interval")

    # then JSON-safe: no NaN
    assert summary["cohen_kappa"] is None
    assert summary["fleiss_kappa"] is None
    assert summary["krippendorff_alpha"] is None
    assert summary["percent_agreement"] == 1.0


# ----------------------------------------------------------------------- labels format


@pytest.fixture
def labels() -> pd.DataFrame:
    """Two experts and a judge on six steps; expert-b skipped step s6."""
    verdicts = {
        "expert-a": ["error", "correct", "abstain", "correct", "error", "correct"],
        "expert-b": ["error", "correct", "error", "abstain", "error", None],
        "judge-1": ["error", "error", "error", "correct", "correct", "correct"],
    }
    kinds = {"expert-a": "expert", "expert-b": "expert", "judge-1": "judge"}
    rows = [
        (f"s{i + 1}", evaluator, kinds[evaluator], verdict)
        for evaluator, values in verdicts.items()
        for i, verdict in enumerate(values)
        if verdict is not None
    ]
    return pd.DataFrame(rows, columns=["step_id", "evaluator", "evaluator_kind", "verdict"])


def _pair(rows, a, b):
    return next(r for r in rows if (r["a"], r["b"]) == (a, b))


def test_pairwise_agreement_treats_abstain_as_a_category(labels):
    # when
    rows = pairwise_agreement(labels, abstain="category")

    # then every pair once, in sorted order, and expert-a vs expert-b on their 5 shared steps
    assert [(r["a"], r["b"]) for r in rows] == [
        ("expert-a", "expert-b"),
        ("expert-a", "judge-1"),
        ("expert-b", "judge-1"),
    ]
    row = _pair(rows, "expert-a", "expert-b")
    a = ["error", "correct", "abstain", "correct", "error"]
    b = ["error", "correct", "error", "abstain", "error"]
    assert row["n"] == 5
    assert row["abstain"] == "category"
    assert row["percent_agreement"] == pytest.approx(3 / 5)
    assert row["cohen_kappa"] == pytest.approx(cohen_kappa_score(a, b))
    assert row["kappa_ci_low"] < row["cohen_kappa"] < row["kappa_ci_high"]
    assert row["confusion"]["abstain"]["error"] == 1
    assert row["confusion"]["correct"]["abstain"] == 1
    assert list(row["confusion"]) == ["correct", "error", "abstain"]


def test_pairwise_agreement_with_abstain_missing_uses_jointly_non_abstained_steps(labels):
    # when
    rows = pairwise_agreement(labels, abstain="missing")

    # then expert-a vs expert-b: s3 and s4 drop out (one of them abstained)
    row = _pair(rows, "expert-a", "expert-b")
    assert row["n"] == 3
    assert row["percent_agreement"] == 1.0
    assert row["cohen_kappa"] == pytest.approx(1.0)
    assert list(row["confusion"]) == ["correct", "error"]
    assert row["abstain"] == "missing"


def test_pairwise_agreement_matches_the_long_table_functions(labels):
    # given one pair as a generic long table
    pair = labels[labels["evaluator"].isin(["expert-a", "judge-1"])]
    data = pair.rename(columns={"step_id": "unit", "evaluator": "rater", "verdict": "value"})

    # when
    row = _pair(pairwise_agreement(labels, abstain="category"), "expert-a", "judge-1")

    # then
    kappa = cohen_kappa(data)
    assert row["cohen_kappa"] == pytest.approx(kappa.kappa)
    assert row["kappa_se"] == pytest.approx(kappa.se)
    assert row["gwet_ac1"] == pytest.approx(
        gwet_ac1(data, categories=["correct", "error", "abstain"])
    )
    assert row["percent_agreement"] == pytest.approx(percent_agreement(data))


def test_multi_rater_agreement_over_all_evaluators_and_one_kind(labels):
    # given the long-table view of the same labels
    data = labels.rename(columns={"step_id": "unit", "evaluator": "rater", "verdict": "value"})
    experts = data[data["evaluator_kind"] == "expert"]

    # when
    everyone = multi_rater_agreement(labels, abstain="category")
    only_experts = multi_rater_agreement(labels, abstain="category", evaluator_kind="expert")

    # then
    assert everyone["n_raters"] == 3
    assert everyone["n_units"] == 6
    assert everyone["fleiss_kappa"] == pytest.approx(fleiss_kappa(data))
    assert everyone["krippendorff_alpha"] == pytest.approx(krippendorff_alpha(data))
    assert only_experts["n_raters"] == 2
    assert only_experts["n_pairable_units"] == 5
    assert only_experts["gwet_ac1"] == pytest.approx(
        gwet_ac1(experts, categories=["correct", "error", "abstain"])
    )
    assert only_experts["evaluator_kind"] == "expert"


def test_multi_rater_agreement_without_pairs_returns_none_coefficients(labels):
    # given only the judge
    # when
    result = multi_rater_agreement(labels, abstain="missing", evaluator_kind="judge")

    # then
    assert result["n_raters"] == 1
    assert result["fleiss_kappa"] is None
    assert result["percent_agreement"] is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.assign(verdict=f["verdict"].replace("error", "wrong")), "'wrong' is not"),
        (lambda f: pd.concat([f, f.iloc[[0]]]), "repeats unit='s1', evaluator='expert-a'"),
        (lambda f: f.drop(columns="verdict"), "missing column\\(s\\) 'verdict'"),
    ],
    ids=["unknown-verdict", "duplicate-label", "missing-column"],
)
def test_labels_agreement_rejects_bad_labels(labels, change, message):
    # when / then
    with pytest.raises(ValueError, match=message):
        pairwise_agreement(change(labels), abstain="category")


def test_labels_agreement_rejects_unknown_abstain_rule(labels):
    # when / then
    with pytest.raises(ValueError, match="abstain must be one of 'category', 'missing'"):
        multi_rater_agreement(labels, abstain="error")
