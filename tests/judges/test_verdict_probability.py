"""A judge's stated probability of an error is stored per verdict (JudgeVerdict.error_probability)
and reaches the report's prediction-powered estimates as their prediction.

From a run with several samples per step: the share of the samples (that said correct or error)
saying error; from an imported file: its ``error_probability`` field, checked like the rest."""

import json

import pytest
from django.db.models import F, Value
from django.db.models.functions import Concat

from annotations.models import Step
from judges.models import JudgeVerdict
from judges.services import run_create, verdicts_import
from judges.services.io import ImportRejected
from reports.collect import labels_collect

pytestmark = pytest.mark.django_db
SAMPLES = 5


def test_a_sampled_run_stores_the_share_of_its_samples_saying_error(
    demo_audit, fake, make_judge, run_chunks
):
    # given every third step split 2 error / 3 correct among the judge's 5 samples, and one
    # sample abstaining on every fifth (abstentions are no vote)
    steps = Step.objects.filter(audit=demo_audit, segmentation="given").order_by("pk")
    split = [s.pk for i, s in enumerate(steps) if i % 3 == 0]
    abstaining = [s.pk for i, s in enumerate(steps) if i % 5 == 0 and i % 3 != 0]
    for pks, marker in ((split, " [vote:e,e,c,c,c]"), (abstaining, " [vote:a,e,e,e,e]")):
        Step.objects.filter(pk__in=pks).update(
            text=Concat(F("text"), Value(marker)),
            blinded_text=Concat(F("blinded_text"), Value(marker)),
        )
    judge = make_judge(fake.base_url, samples_per_step=SAMPLES)
    run = run_create(audit=demo_audit, judge=judge, segmentation="given")
    # when
    run_chunks(run)
    # then
    stored = dict(JudgeVerdict.objects.filter(run=run).values_list("step_id", "error_probability"))
    assert len(stored) == steps.count()
    assert {round(stored[pk], 9) for pk in split} == {0.4}
    assert {stored[pk] for pk in abstaining} == {1.0}  # 4 of the 4 that voted
    others = set(stored) - set(split) - set(abstaining)
    expected = {
        pk: 1.0 if "[wrong]" in text else 0.0
        for pk, text in steps.filter(pk__in=others).values_list("pk", "text")
    }
    assert {pk: stored[pk] for pk in others} == expected
    # and the report's labels carry it for this judge
    labels, _ = labels_collect(demo_audit)
    judged = labels[labels["evaluator_kind"] == "judge"]
    assert judged["judge_probability"].notna().all()
    assert sorted(judged["judge_probability"].unique()) == pytest.approx([0.0, 0.4, 1.0])


def test_one_sample_per_step_states_no_probability(demo_audit, fake, make_judge, run_chunks):
    # given
    run = run_create(audit=demo_audit, judge=make_judge(fake.base_url), segmentation="given")
    # when
    run_chunks(run)
    # then
    assert not JudgeVerdict.objects.filter(run=run, error_probability__isnull=False).exists()
    labels, _ = labels_collect(demo_audit)
    assert labels.loc[labels["evaluator_kind"] == "judge", "judge_probability"].isna().all()


def _lines(*objs) -> list[str]:
    return [json.dumps(o) for o in objs]


def test_imported_verdicts_keep_their_probability_and_the_selector_agrees(demo_audit):
    # given
    a, b, c = Step.objects.filter(audit=demo_audit, segmentation="given").values_list(
        "public_id", flat=True
    )[:3]
    lines = _lines(
        {"step_id": a, "verdict": "error", "error_probability": 0.83},
        {"step_id": b, "verdict": "correct", "error_probability": 0},
        {"step_id": c, "verdict": "correct"},
    )
    # when
    run = verdicts_import(
        audit=demo_audit, judge_name="external", lines=lines, segmentation="given"
    )
    # then
    stored = dict(
        JudgeVerdict.objects.filter(run=run).values_list("step__public_id", "error_probability")
    )
    assert stored == {a: 0.83, b: 0.0, c: None}
    from judges.selectors import verdicts_long_table

    fast, _ = labels_collect(demo_audit)
    fast = fast[fast["evaluator"] == "external"].set_index("step_id")["judge_probability"]
    slow = {r["step_id"]: r["judge_probability"] for r in verdicts_long_table(demo_audit)}
    assert fast[a] == slow[a] == 0.83 and fast[b] == slow[b] == 0.0
    assert slow[c] is None and fast.isna()[c]


@pytest.mark.parametrize("bad", [1.5, -0.2, "high", True, None])
def test_a_bad_probability_rejects_the_file_with_its_line(demo_audit, bad):
    # given
    a, b = Step.objects.filter(audit=demo_audit).values_list("public_id", flat=True)[:2]
    second = {"step_id": b, "verdict": "error", "error_probability": bad}
    lines = _lines({"step_id": a, "verdict": "error", "error_probability": 0.5}, second)
    if bad is None:  # null is allowed: no probability stated
        run = verdicts_import(audit=demo_audit, judge_name="external", lines=lines)
        assert run.verdicts.filter(error_probability__isnull=True).count() == 1
        return
    # when / then
    with pytest.raises(ImportRejected) as caught:
        verdicts_import(audit=demo_audit, judge_name="external", lines=lines)
    assert [(p.line, p.field) for p in caught.value.problems] == [(2, "error_probability")]
    assert not JudgeVerdict.objects.exists()
