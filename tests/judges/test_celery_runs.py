"""End to end: real `celery worker` processes, the fake endpoint as a process, the real broker.

With PostgreSQL and Redis (DATABASE_URL, REDIS_URL) these run the production shape; CI sets
STEPAUDIT_REQUIRE_SERVICES=1 so a missing service fails instead of skipping.
"""

import io
import time

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count

from annotations.models import Step
from judges.models import JudgeRun, JudgeVerdict
from judges.services import judge_create_or_update, run_create

pytestmark = [
    pytest.mark.celery,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

FAULTS = "500,429,malformed,truncated,hang,drop"


def _judge(base_url: str, **overrides):
    spec = {
        "name": "e2e-judge",
        "base_url": base_url,
        "model": "fake-judge",
        "max_concurrency": 8,
        "timeout_s": 1.0,
        "max_retries": 8,
        "max_parse_retries": 3,
    }
    spec.update(overrides)
    return judge_create_or_update(spec=spec)


def _assert_exactly_one_verdict_per_step(run, audit, segmentation):
    step_ids = set(
        Step.objects.filter(audit=audit, segmentation=segmentation).values_list("pk", flat=True)
    )
    per_step = dict(
        JudgeVerdict.objects.filter(run=run)
        .values_list("step_id")
        .annotate(n=Count("id"))
        .values_list("step_id", "n")
    )
    assert set(per_step) == step_ids
    assert set(per_step.values()) == {1}


def test_a_run_completes_with_one_verdict_per_step_under_a_fault_mix(
    demo_audit, celery_worker_process, fake_process, fake_stats_of, wait_run
):
    # given an endpoint failing 15% of requests in every way it knows, and one worker
    base_url = fake_process(
        "--latency-ms", "20", "--fault-rate", "0.15", "--faults", FAULTS,
        "--hang-s", "3", "--retry-after-s", "1", "--seed", "7",
    )  # fmt: skip
    judge = _judge(base_url)
    celery_worker_process(queues="judges")
    # when
    run = run_create(audit=demo_audit, judge=judge, segmentation="given")
    run, _ = wait_run(run, timeout_s=180, stale_after_s=30)
    # then
    assert run.status == JudgeRun.Status.DONE, run.message
    assert run.done == run.total and run.failed == 0
    _assert_exactly_one_verdict_per_step(run, demo_audit, "given")
    faults = fake_stats_of(base_url)["by_fault"]
    assert set(faults) == set(FAULTS.split(",")), faults  # every fault kind happened
    assert JudgeVerdict.objects.filter(run=run, attempts__gt=1).exists()


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(
    demo_audit, celery_worker_process, fake_process, wait_run
):
    # given a slow endpoint and a run well under way on one worker
    base_url = fake_process("--latency-ms", "150", "--jitter-ms", "0")
    judge = _judge(base_url, max_concurrency=4)
    worker = celery_worker_process(queues="judges", name="doomed")
    run = run_create(audit=demo_audit, judge=judge, segmentation="given")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.done >= 30:
            break
        time.sleep(0.1)
    assert 30 <= run.done < run.total
    # when the worker (the whole process group) is killed mid-chunk and a new one starts
    worker.kill()
    killed_at_done = JudgeVerdict.objects.filter(run=run).count()
    celery_worker_process(queues="judges", name="rescuer")
    # then the run ends done — reconcile re-enqueues what the dead worker held — with exactly
    # one verdict per step
    run, reconciled = wait_run(run, timeout_s=180, stale_after_s=4)
    assert run.status == JudgeRun.Status.DONE, run.message
    assert killed_at_done < run.total
    assert run.done == run.total and run.failed == 0
    _assert_exactly_one_verdict_per_step(run, demo_audit, "given")
    assert reconciled >= 1 or run.generation == 0


def test_run_judge_wait_prints_progress_and_exits_by_the_outcome(
    demo_audit, celery_worker_process, fake_process
):
    # given a worker, a judge that works and one whose endpoint rejects every request
    good = fake_process("--latency-ms", "20")
    bad = fake_process("--latency-ms", "1", "--fault-rate", "1", "--faults", "400")
    _judge(good, name="good-judge")
    _judge(bad, name="bad-judge")
    celery_worker_process(queues="judges")
    out = io.StringIO()
    # when
    call_command(
        "run_judge", "--audit", demo_audit.slug, "--judge", "good-judge",
        "--segmentation", "given", "--wait", "--poll-s", "0.3", stdout=out,
    )  # fmt: skip
    # then
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("run ") and lines[-1].endswith(" done")
    assert any("remaining" in line and "steps/s" in line for line in lines)
    # when the run fails, the command fails (a non-zero exit from manage.py)
    with pytest.raises(CommandError, match="ended failed"):
        call_command(
            "run_judge", "--audit", demo_audit.slug, "--judge", "bad-judge",
            "--segmentation", "given", "--wait", "--poll-s", "0.3", stdout=io.StringIO(),
        )  # fmt: skip
