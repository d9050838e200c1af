"""The labels table from the database carries the controls' covariates, and the report
turns them into controls and a hedging rate."""

import pandas as pd
import pytest

from annotations.models import Step, Trace
from auditapp.agreement.controls import step_thirds
from reports.collect import audit_tables_collect, labels_collect
from reports.services import report_build


def test_labels_carry_answer_correctness_dataset_type_and_position(expert_labels):
    # given
    audit = expert_labels
    # when
    labels, _ = labels_collect(audit)
    # then: step position is the third of the step's rank in its trace, by segmentation
    steps = pd.DataFrame(
        Step.objects.filter(audit=audit).values("public_id", "trace_id", "segmentation", "index")
    )
    steps = steps.sort_values(["trace_id", "segmentation", "index"])
    steps["rank"] = steps.groupby(["trace_id", "segmentation"]).cumcount()
    steps["length"] = steps.groupby(["trace_id", "segmentation"])["index"].transform("size")
    steps["expected"] = step_thirds(steps["rank"], steps["length"])
    expected = dict(zip(steps["public_id"], steps["expected"], strict=True))
    assert (labels["step_id"].map(expected) == labels["step_position"]).all()
    assert set(labels["step_position"]) <= {"first", "middle", "last"}
    # answer correctness is the stored import rule, per trace
    stored = {t.pk: t.answer_correct for t in Trace.objects.filter(audit=audit)}
    by_step = dict(Step.objects.filter(audit=audit).values_list("public_id", "trace_id"))
    got = labels.set_index("step_id")["answer_correct"].groupby(level=0).first()
    for step_id, value in got.items():
        assert value == stored[by_step[step_id]] or (
            value is None and stored[by_step[step_id]] is None
        )


@pytest.mark.django_db
def test_report_has_controls_and_hedging_language(expert_labels):
    # given
    tables = audit_tables_collect(expert_labels)
    # when
    report = report_build(audit=expert_labels, resamples=50, tables=tables)
    # then
    controls = report["controls"]
    assert controls is not None
    assert {c["control"] for c in controls["controls"]} >= {"step_position"}
    assert report["hedging_language"]["lexicon"]["version"] == "hedging-v1"
    total = sum(r["n_steps"] for r in report["hedging_language"]["rows"])
    assert total == len(tables.texts)
