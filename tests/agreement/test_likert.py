"""Likert summaries checked against scipy.stats, statsmodels and the krippendorff package."""

import krippendorff
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.sandwich_covariance import cov_cluster_2groups

from auditapp.agreement.likert import likert_summary

ITEMS = ("cognitive_load", "interpretability")
TYPES = ("cot", "distilled", "structured")


@pytest.fixture
def ratings() -> pd.DataFrame:
    """3 trace types x 12 traces x 3 raters x 2 items on a 1-5 scale, types shifted apart."""
    rng = np.random.default_rng(7)
    rows = []
    for shift, trace_type in enumerate(TYPES):
        for t in range(12):
            trace_quality = rng.normal(shift, 0.8)
            for rater in ("r1", "r2", "r3"):
                for item in ITEMS:
                    value = int(np.clip(np.rint(2 + trace_quality + rng.normal(0, 0.7)), 1, 5))
                    rows.append((f"{trace_type}-{t}", trace_type, rater, item, value))
    return pd.DataFrame(rows, columns=["trace_id", "trace_type", "rater", "item", "value"])


def _item(summary, item):
    return next(i for i in summary["items"] if i["item"] == item)


def test_rows_describe_each_trace_type_and_item(ratings):
    # when
    summary = likert_summary(ratings)

    # then one row per (type, item), matching pandas
    expected = ratings.groupby(["trace_type", "item"])["value"].agg(["size", "mean", "median"])
    assert [(r["trace_type"], r["item"]) for r in summary["rows"]] == list(expected.index)
    for row in summary["rows"]:
        size, mean, median = expected.loc[(row["trace_type"], row["item"])]
        assert (row["n"], row["n_traces"]) == (size, 12)
        assert row["mean"] == pytest.approx(mean)
        assert row["median"] == median
        assert row["ci_low"] < row["mean"] < row["ci_high"]


def test_two_way_interval_matches_statsmodels_cluster_2groups():
    # given a Latin-square study: participants and traces both cluster the ratings
    ratings = _latin_square(np.random.default_rng(9), participants=20)
    part = ratings[ratings["trace_type"] == "b"]
    # when
    row = likert_summary(part)["rows"][0]
    # then the standard error is statsmodels' two-way cluster-robust one (intercept only)
    model = sm.OLS(part["value"].to_numpy(float), np.ones((len(part), 1))).fit()
    participants = pd.factorize(part["rater"])[0]
    traces = pd.factorize(part["trace_id"])[0]
    cov, _, _ = cov_cluster_2groups(model, participants, traces)
    groups = min(len(set(participants)), len(set(traces)))
    low, high = stats.t.interval(0.95, groups - 1, part["value"].mean(), np.sqrt(cov[0, 0]))
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high), rel=1e-12)


def test_interval_is_close_to_the_t_interval_with_one_rating_per_trace():
    # given 200 traces of one type, each rated once, so the cluster bootstrap is an ordinary one
    rng = np.random.default_rng(11)
    values = rng.integers(1, 6, size=200)
    ratings = pd.DataFrame(
        {
            "trace_id": [f"t{i}" for i in range(200)],
            "trace_type": "cot",
            "rater": "r1",
            "item": "load",
            "value": values,
        }
    )

    # when
    row = likert_summary(ratings)["rows"][0]

    # then it is the one-sample t interval
    low, high = stats.t.interval(0.95, len(values) - 1, values.mean(), stats.sem(values))
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high), rel=1e-12)


def test_interval_is_none_with_a_single_trace():
    # given
    ratings = pd.DataFrame(
        {
            "trace_id": ["t1", "t1", "t2"],
            "trace_type": ["a", "a", "b"],
            "rater": ["r1", "r2", "r1"],
            "item": "load",
            "value": [3, 4, 2],
        }
    )

    # when
    rows = likert_summary(ratings)["rows"]

    # then
    assert rows[0]["ci_low"] is None and rows[0]["ci_high"] is None


@pytest.mark.parametrize("item", ITEMS, ids=list(ITEMS))
def test_kruskal_wallis_matches_scipy(ratings, item):
    # given
    groups = [
        ratings[(ratings["item"] == item) & (ratings["trace_type"] == t)]["value"] for t in TYPES
    ]

    # when
    result = _item(likert_summary(ratings), item)

    # then
    reference = stats.kruskal(*groups)
    assert result["kruskal_wallis"]["H"] == pytest.approx(reference.statistic)
    assert result["kruskal_wallis"]["p"] == pytest.approx(reference.pvalue)
    assert result["kruskal_wallis"]["df"] == 2


def test_mann_whitney_pairs_match_scipy_and_holm_matches_statsmodels(ratings):
    # given
    item = "interpretability"
    subset = ratings[ratings["item"] == item]
    sample = {t: subset[subset["trace_type"] == t]["value"].to_numpy() for t in TYPES}

    # when
    pairs = _item(likert_summary(ratings), item)["mann_whitney"]

    # then
    assert [(p["a"], p["b"]) for p in pairs] == [
        ("cot", "distilled"),
        ("cot", "structured"),
        ("distilled", "structured"),
    ]
    raw = []
    for pair in pairs:
        reference = stats.mannwhitneyu(sample[pair["a"]], sample[pair["b"]])
        assert pair["U"] == pytest.approx(reference.statistic)
        assert pair["p"] == pytest.approx(reference.pvalue)
        assert (pair["n_a"], pair["n_b"]) == (36, 36)
        raw.append(reference.pvalue)
    holm = multipletests(raw, method="holm")[1]
    assert [p["p_holm"] for p in pairs] == pytest.approx(list(holm))


def test_tests_on_trace_means_use_one_value_per_trace(ratings):
    # given each trace's mean rating of one item
    item = "cognitive_load"
    means = ratings[ratings["item"] == item].groupby(["trace_type", "trace_id"])["value"].mean()
    groups = [means.loc[t].to_numpy() for t in TYPES]

    # when
    result = _item(
        likert_summary(ratings, test_unit="trace"),
        item,
    )

    # then
    reference = stats.kruskal(*groups)
    assert result["kruskal_wallis"]["H"] == pytest.approx(reference.statistic)
    assert result["mann_whitney"][0]["n_a"] == 12


def test_krippendorff_alpha_is_ordinal_across_raters_per_item(ratings):
    # given a raters x traces matrix for one item
    item = "interpretability"
    matrix = (
        ratings[ratings["item"] == item]
        .pivot(index="rater", columns="trace_id", values="value")
        .to_numpy(dtype=float)
    )

    # when
    result = _item(likert_summary(ratings), item)

    # then
    assert result["krippendorff_alpha"] == pytest.approx(
        krippendorff.alpha(reliability_data=matrix, level_of_measurement="ordinal")
    )
    assert (result["n_raters"], result["n_traces"]) == (3, 36)


def test_constant_ratings_leave_tests_undefined():
    # given every rating equal
    ratings = pd.DataFrame(
        {
            "trace_id": ["t1", "t2", "t3", "t4"],
            "trace_type": ["a", "a", "b", "b"],
            "rater": "r1",
            "item": "load",
            "value": [3, 3, 3, 3],
        }
    )

    # when
    item = likert_summary(ratings)["items"][0]

    # then
    assert item["kruskal_wallis"] == {"H": None, "p": None, "df": 1}
    assert item["krippendorff_alpha"] is None


def test_missing_values_are_skipped(ratings):
    # given one value blanked
    blanked = ratings.astype({"value": float})
    blanked.loc[0, "value"] = np.nan

    # when
    summary = likert_summary(blanked)

    # then
    assert sum(row["n"] for row in summary["rows"]) == len(ratings) - 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns="item"), "missing column\\(s\\) 'item'"),
        (lambda f: f.astype({"value": object}).assign(value="four"), "'four' is not a number"),
        (lambda f: pd.concat([f, f.iloc[[0]]]), "repeats trace_id='cot-0', rater='r1'"),
        (
            lambda f: f.assign(trace_type=["cot", "distilled"] * (len(f) // 2)),
            "appears under two trace types",
        ),
    ],
    ids=["missing-column", "not-a-number", "duplicate", "two-types"],
)
def test_bad_ratings_are_rejected(ratings, change, message):
    # when / then
    with pytest.raises(ValueError, match=message):
        likert_summary(change(ratings))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"confidence_level": 1.0}, ValueError, "confidence_level"),
        ({"test_unit": "rater"}, ValueError, "test_unit must be one of"),
    ],
    ids=["level-one", "test-unit"],
)
def test_bad_options_are_rejected(ratings, kwargs, error, message):
    # given
    # when / then
    with pytest.raises(error, match=message):
        likert_summary(ratings, **kwargs)


def _latin_square(rng, *, participants=24, traces_per_type=6, types=("a", "b", "c")):
    """Every participant rates every type; a participant offset and a type effect."""
    rows = []
    effect = {"a": 0.0, "b": 0.4, "c": 0.9}
    for p in range(participants):
        offset = rng.normal(0, 0.8)
        for t in types:
            for i in range(traces_per_type):
                trace = f"{t}{(p + i) % (2 * traces_per_type)}"
                value = np.clip(np.round(3 + effect[t] + offset + rng.normal(0, 0.7)), 1, 5)
                rows.append(
                    {"trace_id": trace, "trace_type": t, "rater": f"p{p}", "item": "load",
                     "value": value}
                )  # fmt: skip
    return pd.DataFrame(rows)


def test_friedman_matches_scipy_on_participant_means():
    # given
    ratings = _latin_square(np.random.default_rng(2))
    # when
    item = likert_summary(ratings)["items"][0]
    # then: scipy on each participant's mean per type
    means = ratings.groupby(["rater", "trace_type"])["value"].mean().unstack()
    expected = stats.friedmanchisquare(means["a"], means["b"], means["c"])
    assert item["friedman"]["statistic"] == pytest.approx(expected.statistic, rel=1e-12)
    assert item["friedman"]["p"] == pytest.approx(expected.pvalue, rel=1e-12)
    assert item["friedman"]["n_raters"] == 24 and item["friedman"]["df"] == 2


def test_friedman_with_two_types_is_the_textbook_statistic():
    # given
    ratings = _latin_square(np.random.default_rng(3), types=("a", "b"))
    # when
    friedman = likert_summary(ratings)["items"][0]["friedman"]
    # then: 12/(nk(k+1))·ΣR² − 3n(k+1), divided by the tie correction
    means = ratings.groupby(["rater", "trace_type"])["value"].mean().unstack().to_numpy()
    ranks = np.array([stats.rankdata(row) for row in means])
    n, k = ranks.shape
    raw = 12 / (n * k * (k + 1)) * np.sum(ranks.sum(axis=0) ** 2) - 3 * n * (k + 1)
    ties = sum(np.sum(c**3 - c) for c in (np.unique(r, return_counts=True)[1] for r in means))
    statistic = raw / (1 - ties / (n * k * (k * k - 1)))
    assert friedman["statistic"] == pytest.approx(statistic, rel=1e-12)
    assert friedman["p"] == pytest.approx(stats.chi2.sf(statistic, 1), rel=1e-12)


def test_two_way_interval_is_wider_than_traces_alone_when_participants_differ():
    # given: strong participant offsets, 8 participants
    ratings = _latin_square(np.random.default_rng(4), participants=8)
    part = ratings[ratings["trace_type"] == "a"]
    # when
    row = likert_summary(part)["rows"][0]
    # then: an independent trace-only cluster bootstrap is narrower
    per_trace = part.groupby("trace_id")["value"].agg(["sum", "count"]).to_numpy()
    rng = np.random.default_rng(1)
    draws = rng.integers(0, len(per_trace), size=(3000, len(per_trace)))
    means = per_trace[draws, 0].sum(axis=1) / per_trace[draws, 1].sum(axis=1)
    trace_only = np.quantile(means, [0.025, 0.975])
    assert row["ci_high"] - row["ci_low"] > 1.2 * (trace_only[1] - trace_only[0])
    assert row["ci_low"] < row["mean"] < row["ci_high"]
