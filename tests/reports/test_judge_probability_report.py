"""The report's PPI rows say what the judge's prediction was: its stated probability or verdict."""

import json

import numpy as np
import pytest

from annotations.models import Step
from judges.services import verdicts_import
from reports.render import report_html
from reports.services import report_build

pytestmark = pytest.mark.django_db


def _import(audit, name, *, with_probability):
    rng = np.random.default_rng(3)
    lines = []
    for public_id, reference in Step.objects.filter(audit=audit, segmentation="given").values_list(
        "public_id", "reference_verdict"
    ):
        wrong = reference == "error"
        p = float(np.clip(rng.normal(0.75 if wrong else 0.2, 0.15), 0, 1))
        record = {"step_id": public_id, "verdict": "error" if p > 0.5 else "correct"}
        if with_probability:
            record["error_probability"] = round(p, 3)
        lines.append(json.dumps(record))
    verdicts_import(audit=audit, judge_name=name, lines=lines, segmentation="given")


def test_ppi_rows_name_their_prediction(expert_labels):
    # given the same judge verdicts imported twice, once with their probabilities
    _import(expert_labels, "with-p", with_probability=True)
    _import(expert_labels, "verdict-only", with_probability=False)
    # when
    report = report_build(audit=expert_labels, resamples=20)
    # then
    rows = {(r["judge"], r["condition"]): r for r in report["ppi"]["rows"]}
    conditions = {c for _, c in rows}
    for condition in conditions:
        with_p, plain = rows[("with-p", condition)], rows[("verdict-only", condition)]
        assert with_p["prediction_probability_share"] == 1.0
        assert plain["prediction_probability_share"] == 0.0
        # the judge's own rate is its verdicts' in both. (Every step is labelled here, so PPI
        # comes out as the experts' mean whatever the prediction; what the probability does to
        # the estimate is checked against ppi_py in tests/agreement/test_ppi_judge_probability.)
        assert with_p["judge_only"] == pytest.approx(plain["judge_only"])
    assert "the judge's probability that the step is an error" in report["methods"]["ppi"]
    html = report_html(report)
    assert "probability" in html and "verdict" in html
