"""The wave stopping rule on a batch drawn from a judge's predictions (issue 15): the batch
records each drawn unit's prediction and each stratum's mean before any label, and the
report's confidence sequences run on the prediction-powered increments f̄ + (y − f)·n/(Nπ)."""

import numpy as np
import pytest

from annotations.models import BatchItem, Step
from annotations.services.batches import batch_assign, batch_build
from annotations.services.labels import label_save
from judges.models import JudgeRun, JudgeVerdict
from reports.render import report_html
from reports.services import report_build

pytestmark = pytest.mark.django_db
SAMPLES = 5


@pytest.fixture
def sampled_run(demo_audit, make_judge):
    """5 samples per step: steps with a reference error get 4 of 5 "error", others 1 of 5 on
    every second step and 0 of 5 on the rest."""
    judge = make_judge("http://127.0.0.1:9", samples_per_step=SAMPLES)
    steps = list(Step.objects.filter(audit=demo_audit, segmentation="given").order_by("pk"))
    run = JudgeRun.objects.create(
        judge=judge, audit=demo_audit, segmentation="given", total=len(steps), status="done"
    )
    verdicts = []
    for i, step in enumerate(steps):
        errors = 4 if step.reference_verdict == "error" else (1 if i % 2 else 0)
        votes = ["error"] * errors + ["correct"] * (SAMPLES - errors)
        verdicts.append(
            JudgeVerdict(
                run=run,
                step=step,
                verdict="error" if errors > 2 else "correct",
                prompt_record={"sample_verdicts": votes},
                error_probability=errors / SAMPLES,
            )
        )
    JudgeVerdict.objects.bulk_create(verdicts)
    return run


def _label_everything_open(mine, clinician):
    """Each open item labelled as its reference verdict says."""
    for item in mine.items.select_related("batch_item__step").order_by("position"):
        if hasattr(item, "label"):
            continue
        error = item.batch_item.step.reference_verdict == "error"
        label_save(
            annotator=clinician,
            assignment_public_id=mine.public_id,
            position=item.position,
            verdict="error" if error else "correct",
            error_category=(mine.batch.audit.error_categories or [""])[0] if error else "",
        )


@pytest.mark.parametrize("design", ["active", "stratified-ppi"])
def test_a_batch_drawn_from_a_judge_stops_on_prediction_powered_increments(
    demo_audit, sampled_run, admin_user, clinician, design
):
    # given a two-wave batch drawn from the run, wave 1 labelled
    batch = batch_build(
        audit=demo_audit,
        name="active-waves",
        size=36,
        segmentation="given",
        design=design,
        uncertainty=f"judge-runs:{sampled_run.pk}",
        waves=2,
        created_by=admin_user,
    )
    sampling = batch.design["sampling"]
    items = list(BatchItem.objects.filter(batch=batch).select_related("step__trace__condition"))
    assert set(sampling["predictions"]) == {str(i.step_id) for i in items}
    assert set(sampling["prediction_means"]) == {s["key"] for s in batch.design["strata"]}
    (mine,) = batch_assign(batch=batch, annotators=[clinician])
    _label_everything_open(mine, clinician)
    # when
    report = report_build(audit=demo_audit, resamples=20)
    # then the section names the increments and each arm's estimate is the difference
    # estimator computed here from the recorded design
    (entry,) = report["sequential"]["batches"]
    assert entry["increments"].startswith("prediction-powered")
    (look,) = entry["looks"]
    strata = {s["key"]: s for s in batch.design["strata"]}
    labelled = {i for i in mine.labels.values_list("assignment_item__batch_item_id", flat=True)}
    for arm in look["arms"]:
        keys = [k for k, s in strata.items() if s["condition"] == arm["arm"]]
        big_n = sum(strata[k]["population"] for k in keys)
        n = sum(strata[k]["sample"] for k in keys)
        f_bar = sum(strata[k]["population"] * sampling["prediction_means"][k] for k in keys) / big_n
        terms = [
            f_bar
            + ((i.step.reference_verdict == "error") - sampling["predictions"][str(i.step_id)])
            * n
            / (big_n * i.inclusion_probability)
            for i in items
            if i.pk in labelled and i.stratum in keys
        ]
        assert arm["estimate"] == pytest.approx(float(np.mean(terms)))
    assert "prediction-powered" in report_html(report)


def test_a_uniform_batch_keeps_the_expert_label_increments(demo_audit, admin_user, clinician):
    # given
    batch = batch_build(
        audit=demo_audit, name="w", size=30, segmentation="given", waves=3, created_by=admin_user
    )
    (mine,) = batch_assign(batch=batch, annotators=[clinician])
    _label_everything_open(mine, clinician)
    # when
    (entry,) = report_build(audit=demo_audit, resamples=20)["sequential"]["batches"]
    # then
    assert entry["increments"].startswith("expert labels")
