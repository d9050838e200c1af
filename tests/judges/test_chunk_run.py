"""judge_chunk_run: idempotent, one verdict per step, blinded prompts, pause / resume / cancel."""

import json
import urllib.request

import pytest

from annotations.models import Condition, Step, Trace
from judges.clients.fake_server import fake_server
from judges.models import JudgeFailure, JudgeRun, JudgeVerdict
from judges.services import (
    TransientJudgeError,
    judge_chunk_run,
    run_cancel,
    run_create,
    run_missing_step_ids,
    run_pause,
    run_resume,
)

pytestmark = pytest.mark.django_db


def test_a_run_stores_one_verdict_per_step_with_its_record(
    run_chunks, demo_audit, fake, make_judge
):
    # given
    judge = make_judge(fake.base_url)
    run = run_create(audit=demo_audit, judge=judge, segmentation="given")
    # when
    run_chunks(run)
    # then
    run.refresh_from_db()
    n_steps = Step.objects.filter(audit=demo_audit, segmentation="given").count()
    assert run.status == JudgeRun.Status.DONE
    assert run.total == run.done == n_steps == JudgeVerdict.objects.filter(run=run).count()
    assert run.failed == 0 and run.prompt_tokens > 0 and run.completion_tokens > 0
    verdict = JudgeVerdict.objects.filter(run=run).first()
    assert verdict.verdict == "correct"
    assert len(verdict.prompt_hash) == 64 and verdict.raw_response and verdict.attempts == 1
    assert verdict.prompt_record["context_mode"] == "preceding"
    assert verdict.prompt_record["final_answer_shown"] is False
    assert verdict.prompt_record["style_blind"] is True


def test_running_the_same_chunk_twice_gives_exactly_one_verdict_per_step(
    demo_audit, fake, make_judge
):
    # given
    judge = make_judge(fake.base_url)
    run = run_create(audit=demo_audit, judge=judge, segmentation="given")
    ids = run_missing_step_ids(run)[:40]
    # when
    first = judge_chunk_run(run_id=run.pk, step_ids=ids)
    requests_after_first = fake.stats()["requests"]
    second = judge_chunk_run(run_id=run.pk, step_ids=ids)
    # then
    assert first.stored == 40 and second.stored == 0
    assert fake.stats()["requests"] == requests_after_first  # nothing asked again
    assert JudgeVerdict.objects.filter(run=run).count() == 40
    run.refresh_from_db()
    assert run.done == 40


def test_the_unique_constraint_drops_a_racing_duplicate(demo_audit, fake, make_judge):
    # given a verdict already stored for a step (as if another worker won the race)
    from judges.services import verdicts_store

    judge = make_judge(fake.base_url)
    run = run_create(audit=demo_audit, judge=judge, segmentation="given")
    step_id = run_missing_step_ids(run)[0]
    row = JudgeVerdict(run_id=run.pk, step_id=step_id, verdict="error")
    # when the same (run, step) is written twice
    inserted = [verdicts_store(run_id=run.pk, verdicts=[row]) for _ in range(2)]
    # then
    assert inserted == [1, 0]
    run.refresh_from_db()
    assert run.done == 1
    assert JudgeVerdict.objects.filter(run=run, step_id=step_id).count() == 1


def test_the_prompt_sent_never_names_condition_blind_code_or_trace(
    run_chunks, demo_audit, make_judge
):
    # given
    secrets = set()
    for condition in Condition.objects.filter(audit=demo_audit):
        secrets |= {condition.name, condition.blind_code}
    secrets |= set(Trace.objects.filter(audit=demo_audit).values_list("external_id", flat=True))
    with fake_server(latency_ms=0, jitter_ms=0, keep_requests=5000) as server:
        judge = make_judge(server.base_url, show_final_answer=True)
        run = run_create(audit=demo_audit, judge=judge, segmentation="given")
        # when
        run_chunks(run)
        base = server.base_url.removesuffix("/v1")
        with urllib.request.urlopen(base + "/_requests") as response:
            bodies = json.loads(response.read())
    # then
    assert len(bodies) == run.total
    sent = json.dumps(bodies)
    leaked = sorted(s for s in secrets if s in sent)
    assert leaked == []
    assert "Final answer the reasoning reached" in sent


def test_style_blind_off_sends_the_raw_text_and_says_so(demo_audit, fake, make_judge):
    # given a step whose raw text differs from its blinded text
    step = (
        Step.objects.filter(audit=demo_audit, segmentation="given")
        .exclude(text__exact=models_F("blinded_text"))
        .first()
    )
    assert step is not None
    judge = make_judge(fake.base_url, style_blind=False, context_mode="step_only")
    run = run_create(audit=demo_audit, judge=judge, segmentation="given")
    # when
    judge_chunk_run(run_id=run.pk, step_ids=[step.pk])
    # then
    user = fake.recent_requests()[-1]["messages"][-1]["content"]
    assert step.text.strip() in user
    verdict = JudgeVerdict.objects.get(run=run, step=step)
    assert verdict.prompt_record["style_blind"] is False
    assert verdict.prompt_record["context_mode"] == "step_only"


def models_F(name):
    from django.db.models import F

    return F(name)


def test_transient_failures_raise_for_a_retry_then_are_recorded_on_the_last_try(
    demo_audit, make_judge
):
    # given an endpoint that always answers 503
    with fake_server(latency_ms=0, jitter_ms=0, fault_rate=1.0, faults=("503",)) as server:
        judge = make_judge(server.base_url, max_retries=0)
        run = run_create(audit=demo_audit, judge=judge, segmentation="given")
        ids = run_missing_step_ids(run)[:5]
        # when a try with retries left meets them
        with pytest.raises(TransientJudgeError):
            judge_chunk_run(run_id=run.pk, step_ids=ids, final_attempt=False)
        assert not JudgeFailure.objects.filter(run=run).exists()
        # and the last try
        outcome = judge_chunk_run(run_id=run.pk, step_ids=ids, final_attempt=True)
    # then
    assert outcome.failed == 5
    run.refresh_from_db()
    assert run.failed == 5 and run.done == 0


def test_unparseable_answers_are_stored_as_invalid_with_the_raw_response(demo_audit, make_judge):
    # given an endpoint that answers prose only
    with fake_server(latency_ms=0, jitter_ms=0, fault_rate=1.0, faults=("prose",)) as server:
        judge = make_judge(server.base_url, max_parse_retries=1)
        run = run_create(audit=demo_audit, judge=judge, segmentation="given")
        ids = run_missing_step_ids(run)[:3]
        # when
        judge_chunk_run(run_id=run.pk, step_ids=ids)
    # then
    verdicts = list(JudgeVerdict.objects.filter(run=run))
    assert [v.verdict for v in verdicts] == ["invalid"] * 3
    assert all("careful thought" in v.raw_response and v.attempts == 2 for v in verdicts)
    run.refresh_from_db()
    assert run.invalid == 3


def test_a_client_error_ends_the_run_failed_and_resume_asks_again(
    run_chunks, demo_audit, make_judge
):
    # given an endpoint that rejects every request with 400
    with fake_server(latency_ms=0, jitter_ms=0, fault_rate=1.0, faults=("400",)) as server:
        judge = make_judge(server.base_url)
        run = run_create(audit=demo_audit, judge=judge, segmentation="given")
        # when
        run_chunks(run, final_attempt=False)  # a 4xx is not retried, even with retries left
        run.refresh_from_db()
        assert run.status == JudgeRun.Status.FAILED and run.failed == run.total
        # when the endpoint is fixed (the judge, which has a run now, cannot be repointed)
        # and the run resumed
        server.server.config.fault_rate = 0.0
        run_resume(run=run)
        run_chunks(run)
    # then
    run.refresh_from_db()
    assert run.status == JudgeRun.Status.DONE
    assert run.failed == 0 and run.done == run.total
    assert not JudgeFailure.objects.filter(run=run).exists()


def test_pause_stops_a_chunk_and_resume_finishes_the_run(run_chunks, demo_audit, fake, make_judge):
    # given a run paused after part of it was judged
    judge = make_judge(fake.base_url)
    run = run_create(audit=demo_audit, judge=judge, segmentation="given")
    ids = run_missing_step_ids(run)
    judge_chunk_run(run_id=run.pk, step_ids=ids[:30])
    run_pause(run=run)
    # when a chunk of the old generation arrives while paused
    skipped = judge_chunk_run(run_id=run.pk, step_ids=ids[30:60])
    # then it does nothing
    assert skipped.skipped and JudgeVerdict.objects.filter(run=run).count() == 30
    # when resumed, an old-generation chunk still exits, the new one works
    run = run_resume(run=run)
    assert judge_chunk_run(run_id=run.pk, step_ids=ids[30:60], generation=0).skipped
    run_chunks(run)
    # then
    run.refresh_from_db()
    assert run.status == JudgeRun.Status.DONE and run.done == run.total == len(ids)
    assert JudgeVerdict.objects.filter(run=run).count() == len(ids)


def test_cancel_stops_the_run_and_keeps_what_was_judged(demo_audit, fake, make_judge):
    # given
    judge = make_judge(fake.base_url)
    run = run_create(audit=demo_audit, judge=judge, segmentation="given")
    ids = run_missing_step_ids(run)
    judge_chunk_run(run_id=run.pk, step_ids=ids[:10])
    # when
    run_cancel(run=run)
    outcome = judge_chunk_run(run_id=run.pk, step_ids=ids[10:])
    # then
    run.refresh_from_db()
    assert outcome.skipped
    assert run.status == JudgeRun.Status.CANCELLED and run.done == 10
    with pytest.raises(Exception, match="already ended"):
        run_cancel(run=run)


def test_a_pause_during_a_chunk_stops_sending(demo_audit, make_judge):
    # given a slow endpoint and a pause issued from inside the chunk, after the first verdicts
    from judges.services import store

    with fake_server(latency_ms=30, jitter_ms=0) as server:
        judge = make_judge(server.base_url, max_concurrency=2)
        run = run_create(audit=demo_audit, judge=judge, segmentation="given")
        ids = run_missing_step_ids(run)
        original = store.verdicts_store

        def store_then_pause(*, run_id, verdicts):
            n = original(run_id=run_id, verdicts=verdicts)
            if JudgeRun.objects.get(pk=run_id).status == JudgeRun.Status.RUNNING:
                run_pause(run=JudgeRun.objects.get(pk=run_id))
            return n

        store.verdicts_store = store_then_pause
        try:
            judge_chunk_run(run_id=run.pk, step_ids=ids)
        finally:
            store.verdicts_store = original
        asked = server.stats()["requests"]
    # then far fewer than all steps were asked, and each asked one was stored once
    stored = JudgeVerdict.objects.filter(run=run).count()
    assert 0 < stored < len(ids) // 2
    assert asked <= stored + 2 * 2  # at most the in-flight ones beyond the stored
