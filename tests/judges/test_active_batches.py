"""The active expert-sample design end to end (issue 15): a judge run with several samples per
step feeds inclusion probabilities; the batch records each item's π; the CLI and the API take
the design; bad sources get a clear error."""

import json
from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from annotations.models import BatchItem, Step
from annotations.services.batches import batch_build
from auditapp.agreement.active import error_probability, inclusion_probabilities
from auditapp.exceptions import ApplicationError
from judges.models import JudgeRun, JudgeVerdict

SAMPLES = 5


@pytest.fixture
def sampled_run(demo_audit, make_judge):
    """A run whose 5 samples per step agree on two thirds of the steps and split 3-2 on the
    rest (the uncertain ones)."""
    judge = make_judge("http://127.0.0.1:9", samples_per_step=SAMPLES)
    steps = list(Step.objects.filter(audit=demo_audit, segmentation="given").order_by("pk"))
    run = JudgeRun.objects.create(
        judge=judge, audit=demo_audit, segmentation="given", total=len(steps), status="done"
    )
    verdicts = []
    for i, step in enumerate(steps):
        votes = ["error"] * 3 + ["correct"] * 2 if i % 3 == 0 else ["correct"] * SAMPLES
        verdicts.append(
            JudgeVerdict(
                run=run,
                step=step,
                verdict="error" if i % 3 == 0 else "correct",
                prompt_record={"sample_verdicts": votes},
            )
        )
    JudgeVerdict.objects.bulk_create(verdicts)
    return run, {s.pk: (i % 3 == 0) for i, s in enumerate(steps)}


def _uniform(batch, key: str) -> float:
    stratum = next(s for s in batch.design["strata"] if s["key"] == key)
    return stratum["sample"] / stratum["population"]


def test_active_batch_records_probabilities_that_follow_the_judges_uncertainty(
    demo_audit, sampled_run
):
    run, uncertain = sampled_run
    batch = batch_build(
        audit=demo_audit,
        name="active",
        size=30,
        segmentation="given",
        design="active",
        uncertainty=f"judge-runs:{run.pk}",
    )
    items = list(BatchItem.objects.filter(batch=batch).select_related("step__trace__condition"))
    assert len(items) == 30
    assert batch.design["sampling"]["design"] == "active"
    # each item's π is the one computed independently from the run's votes, per stratum
    for stratum in batch.design["strata"]:
        pool = sorted(
            Step.objects.filter(
                audit=demo_audit,
                segmentation="given",
                trace__condition__blind_code=stratum["condition"],
            ).values_list("pk", flat=True)
        )
        share = np.array([0.6 if uncertain[pk] else 0.0 for pk in pool])
        pi = inclusion_probabilities(
            error_probability(sample_error_share=share, votes=SAMPLES), n=stratum["sample"]
        )
        expected = dict(zip(pool, pi, strict=True))
        mine = [i for i in items if i.stratum == stratum["key"]]
        assert len(mine) == stratum["sample"]
        for item in mine:
            assert item.inclusion_probability == pytest.approx(expected[item.step_id])
    # the uncertain steps are drawn with higher probabilities than the ones the judge is sure of
    by_kind = {True: [], False: []}
    for i in items:
        by_kind[uncertain[i.step_id]].append(i.inclusion_probability / _uniform(batch, i.stratum))
    assert min(by_kind[True]) > max(by_kind[False])
    assert all(ratio >= 0.2 - 1e-9 for ratio in by_kind[False])  # the floor
    # the same seed draws the same items
    again = batch_build(
        audit=demo_audit,
        name="active-again",
        seed="active",
        size=30,
        segmentation="given",
        design="active",
        uncertainty=f"judge-runs:{run.pk}",
        include_batched=True,
    )
    assert sorted(
        BatchItem.objects.filter(batch=again).values_list("step_id", flat=True)
    ) == sorted(i.step_id for i in items)


def test_the_cli_and_the_api_take_the_design(demo_audit, sampled_run, admin_user, client):
    run, _ = sampled_run
    out = StringIO()
    call_command(
        "create_batch",
        audit=demo_audit.slug,
        size=12,
        design="active",
        uncertainty=f"judge-runs:{run.pk}",
        dry_run=True,
        stdout=out,
    )
    assert "active design: share of 'error' among the samples of one judge run" in out.getvalue()
    client.force_login(admin_user)
    body = {
        "size": 12,
        "segmentation": "given",
        "design": "active",
        "uncertainty": f"judge-runs:{run.pk}",
    }
    response = client.post(
        f"/api/audits/{demo_audit.slug}/batches/preview/",
        json.dumps(body),
        content_type="application/json",
    )
    assert response.status_code == 200 and response.json()["sampling"]["design"] == "active"
    body["name"] = "api-active"
    response = client.post(
        f"/api/audits/{demo_audit.slug}/batches/", json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 201


@pytest.mark.parametrize(
    "uncertainty, message",
    [
        ("", "needs an uncertainty source"),
        ("nosuch:1", "Unknown uncertainty source 'nosuch'"),
        ("judge-runs:abc", "run ids separated by commas"),
        ("judge-runs:999999", "No judge run 999999"),
    ],
)
def test_bad_sources_are_refused_clearly(demo_audit, admin_user, client, uncertainty, message):
    client.force_login(admin_user)
    body = {"size": 12, "segmentation": "given", "design": "active", "uncertainty": uncertainty}
    response = client.post(
        f"/api/audits/{demo_audit.slug}/batches/preview/",
        json.dumps(body),
        content_type="application/json",
    )
    assert response.status_code == 400 and message in response.json()["message"]
    with pytest.raises(CommandError, match=message.split("'")[0]):
        call_command(
            "create_batch", audit=demo_audit.slug, size=12, design="active", uncertainty=uncertainty
        )


def test_the_uncertainty_allocation_gives_the_arms_the_judge_is_least_sure_of_more(
    demo_audit, sampled_run
):
    # given: the judge is split on every third step; make one arm's steps all certain
    run, _ = sampled_run
    from annotations.models import Condition

    certain = Condition.objects.filter(audit=demo_audit).order_by("pk").first()
    JudgeVerdict.objects.filter(run=run, step__trace__condition=certain).update(
        prompt_record={"sample_verdicts": ["correct"] * SAMPLES}, verdict="correct"
    )
    # when
    batch = batch_build(
        audit=demo_audit,
        name="by-uncertainty",
        size=60,
        segmentation="given",
        design="active",
        uncertainty=f"judge-runs:{run.pk}",
        allocation="uncertainty",
    )
    # then each stratum's share ∝ N_h × its mean sqrt(p(1 − p)), recorded with the rule
    sampling = batch.design["sampling"]
    spreads = sampling["stratum_uncertainty"]
    strata = {s["key"]: s for s in batch.design["strata"]}
    p_certain = error_probability(sample_error_share=np.zeros(1), votes=SAMPLES)[0]
    certain_key = next(k for k, s in strata.items() if s["condition"] == certain.blind_code)
    assert spreads[certain_key] == pytest.approx(np.sqrt(p_certain * (1 - p_certain)), abs=1e-4)
    weights = {k: s["population"] * spreads[k] for k, s in strata.items()}
    total = sum(weights.values())
    for key, stratum in strata.items():
        assert abs(stratum["sample"] - 60 * weights[key] / total) < 1.0
    others = [s["sample"] for k, s in strata.items() if k != certain_key]
    assert strata[certain_key]["sample"] < min(others)
    assert "Neyman with the judge's spread" in sampling["rule"]
    assert sum(s["sample"] for s in strata.values()) == 60


def test_the_uncertainty_allocation_needs_the_active_design(demo_audit):
    with pytest.raises(ApplicationError, match="active design"):
        batch_build(
            audit=demo_audit,
            name="no",
            size=30,
            segmentation="given",
            allocation="uncertainty",
        )
