"""The stratified PPI design (issue 15): strata condition × the judge's verdict, Neyman
allocation within each condition, π = n_h / N_h recorded; from the CLI and the API."""

import json
from collections import Counter
from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command

from annotations.models import BatchItem, Step
from annotations.services.batches import batch_build
from auditapp.agreement.stratified import neyman_allocation
from judges.models import JudgeRun, JudgeVerdict

SAMPLES = 5


@pytest.fixture
def sampled_run(demo_audit, make_judge):
    """5 samples per step: a third of the steps 4 of 5 'error', the rest 5 of 5 'correct'."""
    judge = make_judge("http://127.0.0.1:9", samples_per_step=SAMPLES)
    steps = list(Step.objects.filter(audit=demo_audit, segmentation="given").order_by("pk"))
    run = JudgeRun.objects.create(
        judge=judge, audit=demo_audit, segmentation="given", total=len(steps), status="done"
    )
    JudgeVerdict.objects.bulk_create(
        JudgeVerdict(
            run=run,
            step=step,
            verdict="error" if i % 3 == 0 else "correct",
            prompt_record={
                "sample_verdicts": ["error"] * 4 + ["correct"]
                if i % 3 == 0
                else ["correct"] * SAMPLES
            },
        )
        for i, step in enumerate(steps)
    )
    return run


def test_stratified_ppi_batch_uses_judge_strata_and_neyman_allocation(demo_audit, sampled_run):
    # when
    batch = batch_build(
        audit=demo_audit,
        name="sppi",
        size=30,
        segmentation="given",
        design="stratified-ppi",
        uncertainty=f"judge-runs:{sampled_run.pk}",
    )
    # then the strata are condition × verdict, each condition gets 10
    strata = batch.design["strata"]
    assert {s["key"].split(" | ")[1] for s in strata} == {"judge=error", "judge=correct"}
    per_condition = Counter()
    for s in strata:
        per_condition[s["condition"]] += s["sample"]
    assert set(per_condition.values()) == {10}
    # the split within a condition is Neyman on sqrt(p(1 − p)) of the smoothed votes
    p_error, p_correct = (4 + 1) / 7, 1 / 7
    sd = {
        "error": np.sqrt(p_error * (1 - p_error)),
        "correct": np.sqrt(p_correct * (1 - p_correct)),
    }
    for condition in per_condition:
        mine = {s["key"]: s for s in strata if s["condition"] == condition}
        expected = neyman_allocation(
            {k: s["population"] for k, s in mine.items()},
            {k: sd[k.rsplit("=", 1)[1]] for k in mine},
            size=10,
        )
        assert {k: s["sample"] for k, s in mine.items()} == expected
    # every item carries its stratum's n_h / N_h, and the design says how it was built
    by_key = {s["key"]: s for s in strata}
    for item in BatchItem.objects.filter(batch=batch):
        s = by_key[item.stratum]
        assert item.inclusion_probability == pytest.approx(s["sample"] / s["population"])
    assert batch.design["sampling"]["design"] == "stratified-ppi"
    assert batch.design["sampling"]["allocation"] == "neyman"


def test_cli_and_api_take_the_stratified_ppi_design(demo_audit, sampled_run, admin_user, client):
    out = StringIO()
    call_command(
        "create_batch",
        audit=demo_audit.slug,
        size=12,
        design="stratified-ppi",
        uncertainty=f"judge-runs:{sampled_run.pk}",
        dry_run=True,
        stdout=out,
    )
    assert "judge=error" in out.getvalue()
    client.force_login(admin_user)
    body = {
        "size": 12,
        "segmentation": "given",
        "design": "stratified-ppi",
        "uncertainty": f"judge-runs:{sampled_run.pk}",
        "name": "api-sppi",
    }
    response = client.post(
        f"/api/audits/{demo_audit.slug}/batches/", json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 201
    assert response.json()["design"]["sampling"]["design"] == "stratified-ppi"
    body["uncertainty"] = ""
    response = client.post(
        f"/api/audits/{demo_audit.slug}/batches/preview/",
        json.dumps(body),
        content_type="application/json",
    )
    assert (
        response.status_code == 400 and "needs an uncertainty source" in response.json()["message"]
    )
