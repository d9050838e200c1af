"""Error rates per evaluator × condition: counts, abstain rules, Wilson and cluster bootstrap."""

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.proportion import proportion_confint

from auditapp.agreement.formats import labels_validate
from auditapp.agreement.rates import (
    bootstrap_totals,
    cluster_bootstrap_counts,
    error_rates,
    wilson_interval,
)


def _labels(rows):
    """rows: (step, trace, condition, evaluator, kind, verdict)."""
    frame = pd.DataFrame(
        rows,
        columns=["step_id", "trace_id", "condition", "evaluator", "evaluator_kind", "verdict"],
    )
    return frame.assign(question_id="q")


def _clustered(rng, *, conditions, traces=40, steps=6, evaluators=("judge",)):
    rows = []
    for condition, p in conditions.items():
        for t in range(traces):
            propensity = rng.beta(2 * p / (1 - p), 2)
            for s in range(steps):
                error = rng.random() < propensity
                for ev in evaluators:
                    kind = "judge" if ev.startswith("judge") else "expert"
                    verdict = "error" if error else "correct"
                    rows.append(
                        (f"{condition}{t}-{s}", f"{condition}{t}", condition, ev, kind, verdict)
                    )
    return _labels(rows)


# ---------------------------------------------------------------- Wilson


@pytest.mark.parametrize(
    ("count", "nobs", "low", "high"),
    [
        pytest.param(81, 263, 0.2553, 0.3662, id="newcombe-81/263"),
        pytest.param(15, 148, 0.0624, 0.1605, id="newcombe-15/148"),
        pytest.param(0, 20, 0.0000, 0.1611, id="newcombe-0/20"),
        pytest.param(1, 29, 0.0061, 0.1718, id="newcombe-1/29"),
        pytest.param(29, 29, 0.8830, 1.0000, id="newcombe-29/29"),
    ],
)
def test_wilson_matches_newcombe_1998_table(count, nobs, low, high):
    # given: Newcombe (1998) Stat Med 17:857, Table I/II, method 3 (score, no correction)
    # when
    got_low, got_high = wilson_interval(count, nobs)
    # then
    assert round(float(got_low), 4) == low
    assert round(float(got_high), 4) == high


@pytest.mark.parametrize("level", [0.8, 0.9, 0.95, 0.99], ids=lambda x: f"level-{x}")
@pytest.mark.parametrize(
    ("count", "nobs"), [(0, 5), (3, 7), (50, 100), (999, 1000), (10, 10)], ids=str
)
def test_wilson_matches_statsmodels(count, nobs, level):
    # given
    expected = proportion_confint(count, nobs, alpha=1 - level, method="wilson")
    # when
    got = wilson_interval(count, nobs, confidence_level=level)
    # then
    np.testing.assert_allclose([float(got[0]), float(got[1])], expected, atol=1e-12)


def test_wilson_rejects_impossible_counts():
    # given / when / then
    with pytest.raises(ValueError, match="between 0 and nobs"):
        wilson_interval(5, 3)


# ---------------------------------------------------------------- counts and rules


def _small():
    return _labels(
        [
            ("s1", "t1", "A", "j", "judge", "error"),
            ("s2", "t1", "A", "j", "judge", "abstain"),
            ("s3", "t2", "A", "j", "judge", "correct"),
            ("s4", "t2", "A", "j", "judge", "correct"),
            ("s5", "t3", "B", "j", "judge", "error"),
            ("s6", "t3", "B", "j", "judge", "error"),
        ]
    )


@pytest.mark.parametrize(
    ("abstain", "expected"),
    [
        pytest.param("exclude", 1 / 3, id="exclude"),
        pytest.param("error", 2 / 4, id="as-error"),
        pytest.param("correct", 1 / 4, id="as-correct"),
    ],
)
def test_error_rate_follows_the_abstain_rule(abstain, expected):
    # given
    labels = _small()
    # when
    result = error_rates(labels, rng=np.random.default_rng(0), resamples=20, abstain=abstain)
    row = result.row("j", "A")
    # then
    assert (row.n, row.n_abstain, row.n_error) == (4, 1, 1)
    assert row.rate == pytest.approx(expected)
    assert row.abstain_rate == pytest.approx(0.25)
    assert row.rate_abstain_as_error == pytest.approx(0.5)
    assert row.rate_abstain_as_correct == pytest.approx(0.25)


def test_pooled_row_per_kind_with_several_evaluators():
    # given: two experts and one judge on the same steps
    labels = _labels(
        [
            ("s1", "t1", "A", "dr-a", "expert", "error"),
            ("s2", "t1", "A", "dr-a", "expert", "correct"),
            ("s1", "t1", "A", "dr-b", "expert", "error"),
            ("s2", "t1", "A", "dr-b", "expert", "error"),
            ("s1", "t1", "A", "gpt", "judge", "correct"),
        ]
    )
    # when
    result = error_rates(labels, rng=np.random.default_rng(0), resamples=10)
    # then: experts first, then the judge, then the pooled kind; no pooled judge row
    assert [(r.evaluator, r.pooled) for r in result.rows] == [
        ("dr-a", False),
        ("dr-b", False),
        ("gpt", False),
        ("expert", True),
    ]
    pooled = result.row("expert", "A")
    assert (pooled.n, pooled.n_error, pooled.rate) == (4, 3, 0.75)
    assert pooled.evaluator_kind == "expert"


def test_all_abstained_gives_none_rate_not_nan():
    # given
    labels = _labels([("s1", "t1", "A", "j", "judge", "abstain")])
    # when
    row = error_rates(labels, rng=np.random.default_rng(0), resamples=10).rows[0]
    # then
    assert row.rate is None and row.ci_low is None and row.wilson_low is None
    assert row.abstain_rate == 1.0


def test_identical_traces_degenerate_the_bootstrap_and_take_the_small_sample_rule():
    # given: every trace in A has the same error share, so resampling traces changes nothing
    rows = [
        (f"s{t}{s}", f"t{t}", "A", "j", "judge", "error" if s == 0 else "correct")
        for t in range(5)
        for s in range(4)
    ]
    # when
    row = error_rates(_labels(rows), rng=np.random.default_rng(0), resamples=200).rows[0]
    # then: the bootstrap is 0.25–0.25; the reported interval is Wilson's (design effect
    #       floored at 1), never zero-width
    assert row.rate == row.bootstrap_low == row.bootstrap_high == 0.25
    assert row.design_effect == 1.0
    assert (row.ci_low, row.ci_high) == (row.wilson_low, row.wilson_high)
    assert row.wilson_low < 0.25 < row.wilson_high


def test_same_seed_same_result_and_rng_is_the_only_randomness():
    # given
    labels = _clustered(np.random.default_rng(3), conditions={"A": 0.3, "B": 0.5})
    # when
    first = error_rates(labels, rng=np.random.default_rng(11), resamples=300)
    second = error_rates(labels, rng=np.random.default_rng(11), resamples=300)
    # then
    assert first.rows == second.rows


def test_bootstrap_interval_is_wider_than_wilson_under_clustering():
    # given: strong trace effects (propensity ~ Beta), 12 steps per trace
    labels = _clustered(np.random.default_rng(5), conditions={"A": 0.3}, traces=60, steps=12)
    # when
    row = error_rates(labels, rng=np.random.default_rng(0), resamples=1000).rows[0]
    # then
    assert (row.ci_high - row.ci_low) > 1.3 * (row.wilson_high - row.wilson_low)


def test_bootstrap_sd_matches_the_linearised_cluster_variance():
    # given
    labels = _clustered(np.random.default_rng(8), conditions={"A": 0.4}, traces=200, steps=5)
    per_trace = (
        labels.assign(e=labels["verdict"] == "error").groupby("trace_id")["e"].agg(["sum", "size"])
    )
    rate = per_trace["sum"].sum() / per_trace["size"].sum()
    g = len(per_trace)
    residual = per_trace["sum"] - rate * per_trace["size"]
    analytic_sd = np.sqrt(g / (g - 1) * np.sum(residual**2)) / per_trace["size"].sum()
    # when
    result = error_rates(labels, rng=np.random.default_rng(1), resamples=4000)
    boot_sd = np.nanstd(result.replicates[("judge", "A")])
    # then
    assert boot_sd == pytest.approx(analytic_sd, rel=0.08)


def test_replicates_are_paired_across_evaluators():
    # given: two evaluators with identical verdicts
    labels = _clustered(
        np.random.default_rng(2), conditions={"A": 0.3}, evaluators=("judge", "dr-a")
    )
    # when
    result = error_rates(labels, rng=np.random.default_rng(0), resamples=500)
    # then: the same trace draws give the same replicate, resample by resample
    np.testing.assert_array_equal(
        result.replicates[("judge", "A")], result.replicates[("dr-a", "A")]
    )


def test_pattern_multinomial_and_index_draws_agree_in_distribution():
    # given: 3000 clusters with few distinct rows (multinomial path) and the same rows
    #        made unique by a tiny jitter column (index path)
    rng = np.random.default_rng(4)
    errors = rng.integers(0, 4, size=3000).astype(float)
    per_cluster = np.column_stack([errors, np.full(3000, 3.0)])
    jittered = np.column_stack([per_cluster, np.arange(3000) * 1e-9])
    # when
    compact = bootstrap_totals(per_cluster, resamples=4000, rng=np.random.default_rng(0))
    plain = bootstrap_totals(jittered, resamples=4000, rng=np.random.default_rng(0))
    # then: same total of steps, same spread of error totals
    assert np.all(compact[:, 1] == 9000) and np.all(plain[:, 1] == 9000)
    assert compact[:, 0].mean() == pytest.approx(errors.sum(), rel=0.002)
    assert compact[:, 0].std() == pytest.approx(plain[:, 0].std(), rel=0.06)


def test_cluster_bootstrap_counts_blocks_cover_all_resamples():
    # given / when
    blocks = list(cluster_bootstrap_counts(10, resamples=7, rng=np.random.default_rng(0)))
    counts = np.vstack(blocks)
    # then
    assert counts.shape == (7, 10)
    assert np.all(counts.sum(axis=1) == 10)


# ---------------------------------------------------------------- input checks


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            lambda f: f.drop(columns="verdict"), "missing column.*'verdict'", id="no-verdict"
        ),
        pytest.param(
            lambda f: f.assign(verdict=["error"] * 5 + ["wrong"]),
            r"labels row 5, column 'verdict': 'wrong'",
            id="bad-verdict",
        ),
        pytest.param(
            lambda f: f.assign(evaluator_kind=["judge"] * 5 + ["robot"]),
            r"labels row 5, column 'evaluator_kind'",
            id="bad-kind",
        ),
        pytest.param(
            lambda f: f.assign(trace_id=["t1"] * 6),
            r"labels row 4, column 'condition': trace_id 't1'",
            id="trace-in-two-conditions",
        ),
        pytest.param(
            lambda f: f.assign(step_id=["s1"] * 6),
            r"labels row 1: evaluator 'j' labels step 's1' a second time",
            id="duplicate-label",
        ),
        pytest.param(
            lambda f: f.assign(trace_id=[None] + ["t1"] * 3 + ["t3"] * 2),
            r"labels row 0, column 'trace_id': value is missing",
            id="missing-trace",
        ),
        pytest.param(
            lambda f: f.assign(inclusion_probability=[0.5] * 5 + [1.5]),
            r"labels row 5, column 'inclusion_probability': 1.5 is outside \(0, 1\]",
            id="bad-probability",
        ),
    ],
)
def test_bad_labels_raise_precise_errors(change, message):
    # given
    labels = change(_small())
    # when / then
    with pytest.raises(ValueError, match=message):
        error_rates(labels, rng=np.random.default_rng(0), resamples=10)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"resamples": 0}, "resamples", id="resamples"),
        pytest.param({"abstain": "ignore"}, "abstain", id="abstain"),
        pytest.param({"confidence_level": 95}, "confidence_level", id="level"),
    ],
)
def test_bad_options_raise(options, message):
    # given / when / then
    with pytest.raises(ValueError, match=message):
        error_rates(_small(), rng=np.random.default_rng(0), **{"resamples": 10, **options})


def test_validate_keeps_known_columns_and_ids_as_text():
    # given
    labels = _small().assign(step_id=range(6), extra="x", segmentation=None)
    # when
    out = labels_validate(labels)
    # then
    assert "extra" not in out.columns
    assert out["step_id"].tolist() == ["0", "1", "2", "3", "4", "5"]
    assert set(out["segmentation"]) == {"default"}
