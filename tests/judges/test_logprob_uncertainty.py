"""The judge's token probabilities end to end (issue 15): a run with ``logprobs`` on stores them,
the active design draws by them and says so; a server without them falls back to vote shares;
stated confidences and several runs."""

import numpy as np
import pytest

from annotations.models import BatchItem, Step
from annotations.services.batches import batch_build
from auditapp.agreement.active import (
    TOKEN_PROBABILITY_RANGE,
    error_probability,
    inclusion_probabilities,
)
from judges.clients.fake_server import fake_server
from judges.models import JudgeRun, JudgeVerdict
from judges.services import run_create
from judges.services.uncertainty import judge_runs_predictions, judge_runs_source

pytestmark = pytest.mark.django_db

P_OF = (0.5, 0.9, 0.01)  # by the step's position mod 3: unsure, sure of error, surest of correct


def _mark_steps(audit) -> dict[int, float]:
    """Append ``[p_error=…]`` to each 'given' step's blinded text (what the judge sees)."""
    steps = list(Step.objects.filter(audit=audit, segmentation="given").order_by("pk"))
    p = {}
    for i, step in enumerate(steps):
        p[step.pk] = P_OF[i % 3]
        step.blinded_text = f"{step.blinded_text} [p_error={P_OF[i % 3]}]"
    Step.objects.bulk_update(steps, ["blinded_text"])
    return p


def _stratum_pool(audit, stratum) -> list[int]:
    return sorted(
        Step.objects.filter(
            audit=audit, segmentation="given", trace__condition__blind_code=stratum["condition"]
        ).values_list("pk", flat=True)
    )


def test_a_run_with_logprobs_stores_them_and_the_active_design_draws_by_them(
    demo_audit, make_judge, run_chunks
):
    # given a judge asking for log-probabilities and steps whose probability of error is known
    p = _mark_steps(demo_audit)
    with fake_server(latency_ms=1, jitter_ms=0, keep_requests=5000) as server:
        judge = make_judge(server.base_url, logprobs=True, top_logprobs=5)
        run = run_create(audit=demo_audit, judge=judge, segmentation="given")
        # when
        run_chunks(run)
        bodies = server.recent_requests()
    # then every request asked for them and every verdict holds its probability
    run.refresh_from_db()
    assert run.status == JudgeRun.Status.DONE and run.failed == 0
    assert all(b.get("logprobs") is True and b.get("top_logprobs") == 5 for b in bodies)
    records = dict(JudgeVerdict.objects.filter(run=run).values_list("step_id", "prompt_record"))
    assert set(records) == set(p)
    for step_id, record in records.items():
        assert record["sample_error_probabilities"] == [pytest.approx(p[step_id])]
        assert record["error_probability"] == pytest.approx(p[step_id])
        assert "logprobs" not in record  # nothing refused
    # when an active batch is drawn by this run
    batch = batch_build(
        audit=demo_audit,
        name="active-lp",
        size=30,
        segmentation="given",
        design="active",
        uncertainty=f"judge-runs:{run.pk}",
    )
    # then the recorded source names the token probability
    source = batch.design["sampling"]["source"]
    assert source == f"the judge's token probability of 'error' (run {run.pk})"
    # and each item's π is the one the (clipped, unsmoothed) probabilities give
    items = list(BatchItem.objects.filter(batch=batch))
    assert len(items) == 30
    for stratum in batch.design["strata"]:
        pool = _stratum_pool(demo_audit, stratum)
        clipped = np.clip([p[pk] for pk in pool], *TOKEN_PROBABILITY_RANGE)
        pi = dict(zip(pool, inclusion_probabilities(clipped, n=stratum["sample"]), strict=True))
        for item in (i for i in items if i.stratum == stratum["key"]):
            assert item.inclusion_probability == pytest.approx(pi[item.step_id])
    # and the steps nearest 1/2 are drawn with the highest probabilities
    by_p = {q: [i.inclusion_probability for i in items if p[i.step_id] == q] for q in P_OF}
    assert min(by_p[0.5]) > max(by_p[0.9]) > 0
    assert min(by_p[0.9]) > max(by_p[0.01])  # 0.9 is less sure than 0.01 (kept at 0.05)
    # and the planner's predictor reads the same probabilities, nothing to smooth
    predictions, _ = judge_runs_predictions(str(run.pk))
    values, votes = predictions(list(p))
    assert votes == 0 and values == pytest.approx(
        {pk: float(np.clip(q, *TOKEN_PROBABILITY_RANGE)) for pk, q in p.items()}
    )


@pytest.mark.parametrize("server_kind", ["logprobs_unsupported", "logprobs_ignored"])
def test_a_server_without_logprobs_completes_the_run_and_the_design_uses_votes(
    demo_audit, make_judge, run_chunks, server_kind
):
    # given a server that refuses the parameter (400) or ignores it, 3 samples per step
    _mark_steps(demo_audit)
    with fake_server(latency_ms=1, jitter_ms=0, **{server_kind: True}) as server:
        judge = make_judge(server.base_url, logprobs=True, samples_per_step=3, temperature=1)
        run = run_create(audit=demo_audit, judge=judge, segmentation="given")
        # when
        run_chunks(run)
    # then the run completes with a verdict per step and no probability stored
    run.refresh_from_db()
    assert run.status == JudgeRun.Status.DONE and run.failed == 0 and run.done == run.total
    records = list(JudgeVerdict.objects.filter(run=run).values_list("prompt_record", flat=True))
    assert all("error_probability" not in r for r in records)
    assert all("sample_error_probabilities" not in r for r in records)
    refused = [r for r in records if r.get("logprobs") == "unsupported"]
    if server_kind == "logprobs_unsupported":
        assert refused and all("logprobs" in r["logprobs_refused"] for r in refused)
    else:
        assert not refused
    # and the active design falls back to the share of 'error' among the samples
    _, described = judge_runs_source(str(run.pk))
    assert described == f"share of 'error' among the samples of one judge run ({run.pk})"


def test_a_run_whose_answers_state_a_confidence_stores_it_and_the_design_uses_it(
    demo_audit, make_judge, run_chunks
):
    # given a judge whose answers carry a confidence (no log-probabilities asked)
    p = _mark_steps(demo_audit)
    with fake_server(latency_ms=1, jitter_ms=0, state_confidence=True) as server:
        judge = make_judge(server.base_url)
        run = run_create(audit=demo_audit, judge=judge, segmentation="given")
        # when
        run_chunks(run)
    # then each verdict keeps the confidence in itself, and the source reads p back from it
    rows = JudgeVerdict.objects.filter(run=run).values_list("step_id", "verdict", "prompt_record")
    for step_id, verdict, record in rows:
        own = p[step_id] if verdict == "error" else 1 - p[step_id]
        assert record["stated_confidence"] == pytest.approx(own)
    probabilities, described = judge_runs_source(str(run.pk))
    assert described == f"the judge's stated confidence (run {run.pk})"
    assert probabilities(list(p)) == pytest.approx(p)


def _run_with(audit, judge, records_by_index, verdict_of):
    steps = list(Step.objects.filter(audit=audit, segmentation="given").order_by("pk"))
    run = JudgeRun.objects.create(
        judge=judge, audit=audit, segmentation="given", total=len(steps), status="done"
    )
    JudgeVerdict.objects.bulk_create(
        JudgeVerdict(run=run, step=s, verdict=verdict_of(i), prompt_record=records_by_index(i))
        for i, s in enumerate(steps)
    )
    return run, steps


def test_a_stated_confidence_is_used_when_there_are_no_token_probabilities(demo_audit, make_judge):
    # given a run whose verdicts state a confidence (0.9 on errors, 0.6 on correct steps)
    judge = make_judge("http://127.0.0.1:9")
    run, steps = _run_with(
        demo_audit,
        judge,
        lambda i: {"stated_confidence": 0.9 if i % 2 else 0.6},
        lambda i: "error" if i % 2 else "correct",
    )
    # when
    probabilities, described = judge_runs_source(str(run.pk))
    got = probabilities([s.pk for s in steps])
    # then
    assert described == f"the judge's stated confidence (run {run.pk})"
    expected = error_probability(
        confidence=np.array([0.9 if i % 2 else 0.6 for i in range(len(steps))]),
        verdict_is_error=np.array([bool(i % 2) for i in range(len(steps))]),
    )
    assert [got[s.pk] for s in steps] == pytest.approx(expected.tolist())


def test_a_run_with_probabilities_on_some_steps_names_both_sources(demo_audit, make_judge):
    # given token probabilities on even steps, 5 votes on odd ones
    judge = make_judge("http://127.0.0.1:9", samples_per_step=5)
    run, steps = _run_with(
        demo_audit,
        judge,
        lambda i: (
            {"error_probability": 0.999}
            if i % 2 == 0
            else {"sample_verdicts": ["error"] * 3 + ["correct"] * 2}
        ),
        lambda i: "error",
    )
    # when
    probabilities, described = judge_runs_source(str(run.pk))
    got = probabilities([s.pk for s in steps])
    # then
    assert described == (
        "the judge's token probability of 'error', else the share of 'error' among the "
        f"samples of one judge run (run {run.pk})"
    )
    assert got[steps[0].pk] == pytest.approx(TOKEN_PROBABILITY_RANGE[1])  # clipped, not smoothed
    assert got[steps[1].pk] == pytest.approx((0.6 * 5 + 1) / 7)  # smoothed by 5 votes


def test_steps_without_a_probability_in_a_one_sample_run_get_one_half(demo_audit, make_judge):
    # given token probabilities on even steps only, one sample per step
    run, steps = _run_with(
        demo_audit,
        make_judge("http://127.0.0.1:9"),
        lambda i: {"error_probability": 0.3} if i % 2 == 0 else {},
        lambda i: "correct",
    )
    # when
    probabilities, described = judge_runs_source(str(run.pk))
    got = probabilities([s.pk for s in steps])
    # then the odd steps are left out (the design gives them ½) and the description says so
    assert described == (
        "the judge's token probability of 'error', else ½ (one sample per step, no vote share) "
        f"(run {run.pk})"
    )
    assert got[steps[0].pk] == pytest.approx(0.3) and steps[1].pk not in got


def test_several_runs_average_their_probabilities_where_every_run_has_one(demo_audit, make_judge):
    # given two runs: both with token probabilities on even steps, the second without on odd
    first, steps = _run_with(
        demo_audit,
        make_judge("http://127.0.0.1:9"),
        lambda i: {"error_probability": 0.2},
        lambda i: "correct",
    )
    second, _ = _run_with(
        demo_audit,
        make_judge("http://127.0.0.1:9", name="second"),
        lambda i: {"error_probability": 0.6} if i % 2 == 0 else {},
        lambda i: "error",
    )
    # when
    probabilities, described = judge_runs_source(f"{first.pk},{second.pk}")
    got = probabilities([s.pk for s in steps])
    # then the mean where both have one, the smoothed share of runs elsewhere
    assert described.startswith("the mean of the judges' token probabilities of 'error'")
    assert described.endswith(f"(runs {first.pk}, {second.pk})")
    assert got[steps[0].pk] == pytest.approx(0.4)
    assert got[steps[1].pk] == pytest.approx((0.5 * 2 + 1) / 4)
    values, votes = judge_runs_predictions(f"{first.pk},{second.pk}")[0]([s.pk for s in steps])
    assert values[steps[0].pk] == pytest.approx(0.4) and values[steps[1].pk] == 0.5
    assert votes == 2
