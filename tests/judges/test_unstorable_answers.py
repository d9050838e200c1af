"""Every byte a server answers is storable, and a verdict that will not write cannot stall a run
(issue 14: one NUL kept a run "running 0/33" on PostgreSQL)."""

import pytest
from django.db import DataError

from annotations.models import Step
from judges.clients.fake_server import fake_server
from judges.models import JudgeFailure, JudgeRun, JudgeVerdict
from judges.services import run_create, store

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


def test_nul_answers_are_stored_escaped_and_the_run_finishes(demo_audit, make_judge, run_chunks):
    # given a server whose every answer holds raw NUL characters
    with fake_server(profile="nul", latency_ms=1, jitter_ms=0) as server:
        judge = make_judge(server.base_url)
        run = run_create(audit=demo_audit, judge=judge, segmentation="given")
        # when the run's steps are judged on PostgreSQL
        run_chunks(run)
    # then every step has its verdict, parsed, with the NUL shown as an escape
    run.refresh_from_db()
    n_steps = Step.objects.filter(audit=demo_audit, segmentation="given").count()
    assert run.status == JudgeRun.Status.DONE and run.done == n_steps and run.failed == 0
    verdict = JudgeVerdict.objects.filter(run=run).first()
    assert verdict.verdict in ("correct", "error", "abstain")
    assert "\x00" not in verdict.raw_response and "Fake\\u0000judge" in verdict.raw_response
    assert "Fake\\u0000judge" in verdict.rationale


def test_a_verdict_that_will_not_write_ends_as_a_failure_with_its_reason(
    demo_audit, make_judge, monkeypatch, run_chunks
):
    # given a database that refuses one step's verdict whatever is tried
    real_store = store.verdicts_store
    with fake_server(latency_ms=1, jitter_ms=0) as server:
        judge = make_judge(server.base_url)
        run = run_create(audit=demo_audit, judge=judge, segmentation="given")
        doomed = Step.objects.filter(audit=demo_audit, segmentation="given").order_by("pk")[3].pk
        tries = []

        def refusing(*, run_id, verdicts):
            if any(v.step_id == doomed for v in verdicts):
                tries.append(len(verdicts))
                raise DataError("value refused by the database (test)")
            return real_store(run_id=run_id, verdicts=verdicts)

        monkeypatch.setattr(store, "verdicts_store", refusing)
        # when
        run_chunks(run)
    # then the others are stored, the doomed one is a failure after bounded tries, the run ended
    run.refresh_from_db()
    failure = JudgeFailure.objects.get(run=run)
    assert failure.step_id == doomed and failure.kind == "store_error"
    assert "after 3 tries" in failure.error and "value refused by the database" in failure.error
    assert run.status in JudgeRun.ENDED and run.done + run.failed == run.total
    assert len(tries) == 1 + 3  # its batch once, then the row alone three times
