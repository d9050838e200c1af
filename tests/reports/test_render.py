"""What the page and the stand-alone HTML show: Likert figure, blinding headline, tables."""

import numpy as np
import pandas as pd
import pytest

from auditapp.agreement.report import report_compute
from reports.exports import report_tables
from reports.render import blinding_headline, likert_tests_line, report_context


def _report() -> dict:
    rng = np.random.default_rng(0)
    rows = [
        (f"t{t}", ["short", "long"][t % 2], rater, item, int(rng.integers(1, 6)) + (t % 2))
        for t in range(30)
        for rater in ("c1", "c2")
        for item in ("interpretability", "cognitive_load")
    ]
    ratings = pd.DataFrame(rows, columns=["trace_id", "trace_type", "rater", "item", "value"])
    labels = pd.DataFrame(
        {
            "step_id": [f"s{i}" for i in range(40)],
            "trace_id": [f"t{i // 4}" for i in range(40)],
            "question_id": "q",
            "condition": ["A"] * 20 + ["B"] * 20,
            "evaluator": "judge",
            "evaluator_kind": "judge",
            "verdict": ["error", "correct", "correct", "correct"] * 10,
        }
    )
    return report_compute(labels, None, ratings, rng=rng, resamples=100)


def test_likert_figure_and_kruskal_wallis_line():
    # given a report with ratings
    report = _report()
    # when
    context = report_context(report, standalone=False)
    standalone = report_context(report, standalone=True)
    # then one figure with a panel per item, and the test per item in words
    svg = context["figures"]["likert"]
    assert svg.startswith("<svg") and "interpretability" in svg and "Kruskal" in svg
    assert standalone["figures"]["likert"].startswith("data:image/svg+xml;base64,")
    line = likert_tests_line(report)
    assert line.startswith("Kruskal–Wallis across trace types — ")
    assert "interpretability: H(1) = " in line and "cognitive load: H(1) = " in line


@pytest.mark.parametrize(
    ("auc", "low", "high", "tone"),
    [
        (0.51, 0.47, 0.55, "yes"),
        (0.55, 0.52, 0.58, "maybe"),
        (0.80, 0.75, 0.85, "no"),
        (0.20, 0.10, 0.30, "maybe"),
    ],
    ids=["blind", "slight", "leak", "below-chance"],
)
def test_blinding_headline_reads_the_interval(auc, low, high, tone):
    # given
    classifier = {"auc": auc, "ci_low": low, "ci_high": high, "n": 100, "n_traces": 20}
    report = {"blinding": {"classifier": classifier, "index": None, "notes": []}}
    # when
    headline = blinding_headline(report)
    # then
    assert headline["classifier"]["tone"] == tone
    assert headline["classifier"]["auc"] == f"{auc:.3f}"


def test_every_report_table_is_a_flat_frame():
    # given
    report = _report()
    # when
    tables = report_tables(report)
    # then the new tables are there, and every cell is a scalar
    assert {"blinding_classifier", "blinding_index", "answer_vs_step"} <= set(tables)
    for name, frame in tables.items():
        for column in frame.columns:
            assert not frame[column].map(lambda v: isinstance(v, dict | list)).any(), name
