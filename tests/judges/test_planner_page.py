"""The pilot planner on the batch page and API (issue 15): labels per arm per design from a
judge run and the expert labels so far, the design effect, a suggested design."""

import numpy as np
import pytest

from annotations.models import Step
from annotations.services.batches import batch_assign, batch_build
from annotations.services.labels import label_save
from auditapp.agreement.pilot_planning import ArmPilot, pilot_plan
from judges.models import JudgeRun, JudgeVerdict

SAMPLES = 5


@pytest.fixture
def pilot(demo_audit, make_judge, admin_user, clinician):
    """A judge sampled 5 times per step (a third of the steps mostly 'error'), and a pilot
    batch of 45 steps labelled by a clinician who agrees with the judge most of the time."""
    judge = make_judge("http://127.0.0.1:9", samples_per_step=SAMPLES)
    steps = list(Step.objects.filter(audit=demo_audit, segmentation="given").order_by("pk"))
    run = JudgeRun.objects.create(
        judge=judge, audit=demo_audit, segmentation="given", total=len(steps), status="done"
    )
    share = {}
    rows = []
    for i, step in enumerate(steps):
        votes = ["error"] * (4 if i % 3 == 0 else i % 2) + ["correct"] * SAMPLES
        votes = votes[:SAMPLES]
        share[step.pk] = votes.count("error") / SAMPLES
        rows.append(
            JudgeVerdict(
                run=run,
                step=step,
                verdict="error" if share[step.pk] > 0.5 else "correct",
                prompt_record={"sample_verdicts": votes},
            )
        )
    JudgeVerdict.objects.bulk_create(rows)
    batch = batch_build(
        audit=demo_audit, name="pilot", size=45, segmentation="given", created_by=admin_user
    )
    (mine,) = batch_assign(batch=batch, annotators=[clinician])
    category = (demo_audit.error_categories or [""])[0]
    for item in mine.items.select_related("batch_item").order_by("position"):
        pk = item.batch_item.step_id
        error = share[pk] > 0.5 if pk % 5 else share[pk] <= 0.5  # every 5th disagrees
        label_save(
            annotator=clinician,
            assignment_public_id=mine.public_id,
            position=item.position,
            verdict="error" if error else "correct",
            error_category=category if error else "",
        )
    return batch, run, share


def test_api_plans_each_design_from_the_pilot(api_client, pilot, admin_user):
    batch, run, share = pilot
    api_client.force_authenticate(admin_user)
    # when
    response = api_client.get(
        f"/api/batches/{batch.pk}/plan/", {"judge": f"judge-runs:{run.pk}", "half_width": 0.1}
    )
    # then
    assert response.status_code == 200, response.content
    plan = response.json()
    assert set(plan["n_per_arm"]) == {"expert-only", "PPI++", "stratified PPI", "active + PPI++"}
    assert plan["suggestion"] == min(plan["n_per_arm"], key=plan["n_per_arm"].get)
    assert plan["design_effect"] >= 1.0
    # the same numbers as the pure planner on the pilot rebuilt here
    from annotations.models import Label

    a, b = plan["pair"]
    arms = {}
    for code in (a, b):
        pool = Step.objects.filter(
            audit=batch.audit, segmentation="given", trace__condition__blind_code=code
        ).order_by("pk")
        labelled = dict(Label.objects.filter(step__in=pool).values_list("step_id", "verdict"))
        ids = [pk for pk in pool.values_list("pk", flat=True) if pk in labelled]
        arms[code] = ArmPilot(
            y=np.array([labelled[pk] == "error" for pk in ids], dtype=float),
            f=np.array([share[pk] for pk in ids]),
            f_all=np.array([share[pk] for pk in pool.values_list("pk", flat=True)]),
            clusters=np.array(list(pool.filter(pk__in=ids).values_list("trace_id", flat=True))),
        )
    expected = pilot_plan(
        arms,
        pair=(a, b),
        half_width=0.1,
        steps_per_trace=plan["steps_per_trace"],
        votes=SAMPLES,
    )
    for design, n in plan["n_per_arm"].items():
        assert n == expected.n_per_arm[design], design


def test_the_batch_page_shows_the_planner(client, pilot, admin_user):
    batch, run, _ = pilot
    client.force_login(admin_user)
    page = client.get(f"/batches/{batch.pk}/", {"judge": f"judge-runs:{run.pk}"}).content.decode()
    assert "How many expert labels" in page
    assert "(suggested)" in page and "create_batch --design" in page
    # without a judge the form is there, no table
    plain = client.get(f"/batches/{batch.pk}/").content.decode()
    assert 'id="planner"' in plain and "(suggested)" not in plain


@pytest.mark.parametrize(
    "params, message",
    [
        ({}, "Choose the judge"),
        ({"judge": "nosuch:1"}, "Unknown judge source"),
        ({"judge": "judge-runs:999999"}, "No judge run"),
        ({"judge": "judge-runs:{run}", "half_width": 2}, "half_width"),
    ],
    ids=["no-judge", "unknown-source", "missing-run", "bad-half-width"],
)
def test_bad_planner_input_is_a_400(api_client, pilot, admin_user, params, message):
    batch, run, _ = pilot
    api_client.force_authenticate(admin_user)
    params = {k: str(v).format(run=run.pk) for k, v in params.items()}
    response = api_client.get(f"/api/batches/{batch.pk}/plan/", params)
    assert response.status_code == 400
    assert message in response.content.decode()


def test_too_small_a_pilot_says_how_many_labels(api_client, demo_audit, make_judge, admin_user):
    judge = make_judge("http://127.0.0.1:9")
    steps = list(Step.objects.filter(audit=demo_audit, segmentation="given"))
    run = JudgeRun.objects.create(
        judge=judge, audit=demo_audit, segmentation="given", total=len(steps), status="done"
    )
    JudgeVerdict.objects.bulk_create(JudgeVerdict(run=run, step=s, verdict="error") for s in steps)
    batch = batch_build(audit=demo_audit, name="b", size=12, segmentation="given")
    api_client.force_authenticate(admin_user)
    response = api_client.get(f"/api/batches/{batch.pk}/plan/", {"judge": f"judge-runs:{run.pk}"})
    assert response.status_code == 400 and "at least 5 expert labels" in response.json()["message"]


def test_only_admins_plan(api_client, pilot, clinician):
    batch, _, _ = pilot
    api_client.force_authenticate(clinician)
    assert api_client.get(f"/api/batches/{batch.pk}/plan/").status_code == 403


def test_a_batch_of_a_judge_design_plans_with_its_own_judge(
    client, demo_audit, make_judge, admin_user
):
    # given a stratified-PPI batch and no expert label yet
    judge = make_judge("http://127.0.0.1:9")
    steps = list(Step.objects.filter(audit=demo_audit, segmentation="given"))
    run = JudgeRun.objects.create(
        judge=judge, audit=demo_audit, segmentation="given", total=len(steps), status="done"
    )
    JudgeVerdict.objects.bulk_create(
        JudgeVerdict(run=run, step=s, verdict="error" if s.pk % 4 == 0 else "correct")
        for s in steps
    )
    batch = batch_build(
        audit=demo_audit,
        name="sppi",
        size=24,
        segmentation="given",
        design="stratified-ppi",
        uncertainty=f"judge-runs:{run.pk}",
    )
    client.force_login(admin_user)
    # when / then the page reads the design's judge and says what the pilot lacks
    page = client.get(f"/batches/{batch.pk}/")
    assert page.status_code == 200
    assert "at least 5 expert labels" in page.content.decode()
    assert f"judge-runs:{run.pk}" in page.content.decode()
