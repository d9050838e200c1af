"""First-error mode (issue 13): the judge reads a whole blinded trace and names its first wrong
step; the answer is stored as step verdicts (before it correct, it error, later none)."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from annotations.models import Condition, Step, Trace
from judges.clients.fake_server import fake_server
from judges.models import JudgeFailure, JudgeRun, JudgeVerdict
from judges.services import JudgeSpecError, run_create, run_resume

pytestmark = pytest.mark.django_db


def _mark(audit, segmentation="given"):
    """Mark the first wrong step of every third trace ([wrong] in the blinded text) and
    return trace id → the 1-based first wrong step (None: no error)."""
    expected = {}
    traces = Trace.objects.filter(audit=audit).order_by("pk")
    for n, trace in enumerate(traces):
        steps = list(Step.objects.filter(trace=trace, segmentation=segmentation).order_by("index"))
        if not steps:
            continue
        k = None
        if n % 3 == 1:
            k = min(len(steps), 1 + n % 4)  # positions 1..4, within the trace
            step = steps[k - 1]
            step.blinded_text = step.blinded_text + " [wrong]"
            step.save(update_fields=["blinded_text"])
        expected[trace.pk] = (k, [s.pk for s in steps])
    return expected


def _stored(run):
    return dict(JudgeVerdict.objects.filter(run=run).values_list("step_id", "verdict"))


def test_a_first_error_run_stores_derived_step_verdicts_one_request_per_trace(
    run_chunks, demo_audit, make_judge
):
    # given
    expected = _mark(demo_audit)
    with fake_server(latency_ms=0, jitter_ms=0, keep_requests=5000) as server:
        judge = make_judge(server.base_url, structured_output="json_schema")
        run = run_create(
            audit=demo_audit, judge=judge, segmentation="given", label_mode="first_error"
        )
        assert run.label_mode == "first_error"
        # when
        run_chunks(run)
        bodies = server.recent_requests()
    # then one request per trace
    assert len(bodies) == len(expected)
    run.refresh_from_db()
    assert run.status == JudgeRun.Status.DONE, run.message
    # and the verdicts: before the first error correct, it error, later steps none
    stored = _stored(run)
    for k, step_ids in expected.values():
        if k is None:
            assert [stored[s] for s in step_ids] == ["correct"] * len(step_ids)
        else:
            assert [stored.get(s) for s in step_ids[:k]] == ["correct"] * (k - 1) + ["error"]
            assert not set(step_ids[k:]) & set(stored)
    # the run's total counts the steps that got a verdict, so it ended
    assert run.done == run.total == len(stored) and run.failed == 0
    # tokens are counted once per request, on the trace's first step
    first_steps = [ids[0] for _, ids in expected.values()]
    assert JudgeVerdict.objects.filter(run=run, prompt_tokens__gt=0).count() == len(first_steps)
    record = JudgeVerdict.objects.filter(run=run, step_id=first_steps[0]).get().prompt_record
    assert record["label_mode"] == "first_error" and record["style_blind"] is True
    # the schema enforced has exactly the trace's step numbers
    body = bodies[0]
    schema = body["response_format"]["json_schema"]["schema"]
    n = body["messages"][1]["content"].count("\nStep ")  # one line per step
    assert schema["properties"]["first_error_step"]["enum"] == ["none", *map(str, range(1, n + 1))]


def test_the_whole_trace_is_blinded_and_style_normalised(run_chunks, demo_audit, make_judge):
    secrets = set()
    for condition in Condition.objects.filter(audit=demo_audit):
        secrets |= {condition.name, condition.blind_code}
    secrets |= set(Trace.objects.filter(audit=demo_audit).values_list("external_id", flat=True))
    with fake_server(latency_ms=0, jitter_ms=0, keep_requests=5000) as server:
        judge = make_judge(server.base_url, label_mode="first_error")
        run = run_create(audit=demo_audit, judge=judge, segmentation="given")
        assert run.label_mode == "first_error"  # the judge's default
        run_chunks(run)
        bodies = server.recent_requests()
    assert bodies
    trace = Trace.objects.filter(audit=demo_audit).order_by("pk").first()
    steps = Step.objects.filter(trace=trace, segmentation="given").order_by("index")
    shown = [" ".join(s.blinded_text.split()) for s in steps]
    text = "\n".join(f"Step {i}: {t}" for i, t in enumerate(shown, 1))
    assert any(text in b["messages"][1]["content"] for b in bodies)
    for body in bodies:
        sent = json.dumps(body)
        assert not [s for s in secrets if s and s in sent]


def test_bad_answers_are_failures_with_the_reason_and_resume_asks_again(
    run_chunks, demo_audit, make_judge
):
    # given one trace whose judge names a step past its end, one whose answers are prose
    traces = list(Trace.objects.filter(audit=demo_audit).order_by("pk")[:2])
    for trace, marker in zip(traces, ("[fe-out-of-range]", "[unparseable]"), strict=True):
        step = Step.objects.filter(trace=trace, segmentation="given").order_by("index").first()
        step.blinded_text += f" {marker}"
        step.save(update_fields=["blinded_text"])
    with fake_server(latency_ms=0, jitter_ms=0) as server:
        judge = make_judge(server.base_url, max_parse_retries=1)
        run = run_create(
            audit=demo_audit, judge=judge, segmentation="given", label_mode="first_error"
        )
        # when
        run_chunks(run)
        run.refresh_from_db()
        # then the run ends failed, every step of the two traces a failure with the reason
        assert run.status == JudgeRun.Status.FAILED
        bad_steps = Step.objects.filter(trace__in=traces, segmentation="given")
        failures = JudgeFailure.objects.filter(run=run)
        assert set(failures.values_list("step_id", flat=True)) == set(
            bad_steps.values_list("pk", flat=True)
        )
        assert set(failures.values_list("kind", flat=True)) == {"invalid_answer"}
        reasons = " | ".join(failures.values_list("error", flat=True))
        assert "out of range" in reasons and "not a JSON object" in reasons
        assert not JudgeVerdict.objects.filter(run=run, step__in=bad_steps).exists()
        # when the markers are gone and the run resumes, only those traces are asked again
        Step.objects.filter(pk__in=bad_steps).update(blinded_text="A plain step.")
        server.reset()
        run_resume(run=run)
        run_chunks(run)
        run.refresh_from_db()
        assert server.stats()["requests"] == 2
    assert run.status == JudgeRun.Status.DONE and run.failed == 0


def test_modes_do_not_mix_for_one_judge_version_and_bad_modes_are_refused(
    run_chunks, demo_audit, make_judge, fake
):
    from auditapp.exceptions import ApplicationError, ConflictError

    judge = make_judge(fake.base_url)
    run_chunks(run_create(audit=demo_audit, judge=judge, segmentation="given"))
    with pytest.raises(ConflictError, match="already ran in steps mode"):
        run_create(audit=demo_audit, judge=judge, segmentation="given", label_mode="first_error")
    with pytest.raises(ApplicationError, match="label_mode must be one of"):
        run_create(audit=demo_audit, judge=judge, label_mode="trace")
    with pytest.raises(JudgeSpecError, match="label_mode"):
        make_judge(fake.base_url, name="other", label_mode="whole")
    # a spec with the other mode is a new version: its own evaluator
    second = make_judge(fake.base_url, label_mode="first_error")
    assert second.version == 2 and second.label_mode == "first_error"


def test_the_commands_api_and_page_take_the_mode(
    demo_audit, fake, make_judge, tmp_path, client, researcher
):
    spec = tmp_path / "judge.json"
    spec.write_text(json.dumps({"name": "fe-judge", "base_url": fake.base_url, "model": "m"}))
    call_command("create_judge", str(spec), "--label-mode", "first_error", stdout=io.StringIO())
    out = io.StringIO()
    call_command(
        "run_judge", "--audit", demo_audit.slug, "--judge", "fe-judge", "--segmentation",
        "given", stdout=out,
    )  # fmt: skip
    assert JudgeRun.objects.get(judge__name="fe-judge").label_mode == "first_error"
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("run_judge", "--audit", demo_audit.slug, "--judge", "fe-judge",
                     "--label-mode", "trace", stdout=io.StringIO())  # fmt: skip
    # the API: a field, refused when unknown, mixing refused with a 409
    make_judge(fake.base_url, name="api-judge")
    client.force_login(researcher)
    url = "/api/judges/runs/"
    bad = client.post(url, {"audit": demo_audit.slug, "judge": "api-judge", "label_mode": "x"},
                      content_type="application/json")  # fmt: skip
    assert bad.status_code == 400
    made = client.post(url, {"audit": demo_audit.slug, "judge": "api-judge",
                             "segmentation": "given", "label_mode": "first_error"},
                       content_type="application/json")  # fmt: skip
    assert made.status_code == 201 and made.json()["label_mode"] == "first_error"
    mixed = client.post(url, {"audit": demo_audit.slug, "judge": "api-judge",
                              "label_mode": "steps"}, content_type="application/json")  # fmt: skip
    assert mixed.status_code == 409 and "already ran" in mixed.json()["message"]
    # the page: a form field
    page = client.get(f"/judges/audits/{demo_audit.slug}/runs/")
    assert page.status_code == 200 and 'name="label_mode"' in page.content.decode()
    posted = client.post(
        f"/judges/audits/{demo_audit.slug}/runs/",
        {"judge": "fe-judge", "segmentation": "sentences", "label_mode": "first_error"},
    )
    assert posted.status_code == 302
    assert (
        JudgeRun.objects.filter(judge__name="fe-judge", segmentation="sentences").get().label_mode
        == "first_error"
    )


@pytest.mark.celery
@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_runs_a_first_error_run_through_redis_with_faults(
    demo_audit, celery_worker_process, fake_process, wait_run
):
    # given marked traces, an endpoint failing 10% of requests, and a real worker on Redis
    from judges.services import judge_create_or_update

    expected = _mark(demo_audit)
    base_url = fake_process(
        "--latency-ms", "20", "--fault-rate", "0.1", "--faults", "500,429,truncated,drop",
        "--retry-after-s", "1", "--seed", "5",
    )  # fmt: skip
    judge = judge_create_or_update(
        spec={
            "name": "fe-e2e",
            "base_url": base_url,
            "model": "fake-judge",
            "max_concurrency": 4,
            "timeout_s": 2.0,
            "max_retries": 8,
            "max_parse_retries": 3,
            "label_mode": "first_error",
            "structured_output": "json_schema",
        }
    )
    celery_worker_process(queues="judges")
    # when
    run = run_create(audit=demo_audit, judge=judge, segmentation="given")
    run, _ = wait_run(run, timeout_s=180, stale_after_s=30)
    # then every trace is answered once, as derived step verdicts
    assert run.status == JudgeRun.Status.DONE, run.message
    stored = _stored(run)
    for k, step_ids in expected.values():
        want = ["correct"] * len(step_ids) if k is None else ["correct"] * (k - 1) + ["error"]
        assert [stored.get(s) for s in step_ids[: len(want)]] == want
        assert not set(step_ids[len(want) :]) & set(stored)
    assert run.done == run.total == len(stored) == JudgeVerdict.objects.filter(run=run).count()


def test_the_batch_api_and_imports_stay_in_steps_mode(run_chunks, demo_audit, make_judge, fake):
    from auditapp.exceptions import ApplicationError, ConflictError
    from judges.services import batch_run_create, verdicts_import

    judge = make_judge(fake.base_url, label_mode="first_error")
    with pytest.raises(ApplicationError, match="batch API"):
        batch_run_create(audit=demo_audit, judge=judge)
    run_chunks(run_create(audit=demo_audit, judge=judge, segmentation="given"))
    step = Step.objects.filter(audit=demo_audit, segmentation="given").first()
    line = json.dumps({"step_id": step.public_id, "verdict": "error"})
    with pytest.raises(ConflictError, match="already ran in first_error mode"):
        verdicts_import(audit=demo_audit, judge_name=judge.name, lines=[line])


FIRST_ERROR_PROMPT = {
    "name": "fe-terse",
    "system": "Audit this reasoning. Categories:\n$categories\nReply with "
    '{"first_error_step": "<k or none>", "error_category": null, "rationale": ""}.',
    "user": "Q: $question\n$options\n$final_answer\n$n_steps steps:\n<trace>\n$steps\n</trace>",
}


def test_a_first_error_run_uses_the_judges_own_first_error_prompt(
    run_chunks, demo_audit, make_judge
):
    # given a judge whose spec brings its own first-error prompt
    expected = _mark(demo_audit)
    with fake_server(latency_ms=0, jitter_ms=0, keep_requests=5000) as server:
        judge = make_judge(server.base_url, label_mode="first_error", prompt=FIRST_ERROR_PROMPT)
        run = run_create(audit=demo_audit, judge=judge, segmentation="given")
        # when
        run_chunks(run)
        bodies = server.recent_requests()
    # then the run names it, every request was rendered from it, the verdicts record it
    run.refresh_from_db()
    assert str(run.prompt) == "fe-terse@v1" and run.prompt.used_at is not None
    assert run.status == JudgeRun.Status.DONE, run.message
    assert len(bodies) == len(expected)
    for body in bodies:
        system, user = (m["content"] for m in body["messages"])
        assert system.startswith("Audit this reasoning.") and "meticulous" not in system
        assert user.startswith("Q: ") and "<trace>\nStep 1: " in user
    records = JudgeVerdict.objects.filter(run=run).values_list("prompt_record", flat=True)
    assert {r["prompt"] for r in records} == {"fe-terse@v1"}
    # and the answers were read as before: the marked steps are the errors
    stored = _stored(run)
    for k, step_ids in expected.values():
        if k is not None:
            assert stored[step_ids[k - 1]] == "error"


def test_the_shipped_prompts_follow_the_runs_mode(run_chunks, demo_audit, make_judge, fake):
    # given a judge on the shipped (step) prompt whose run asks for first errors
    judge = make_judge(fake.base_url)
    run = run_create(audit=demo_audit, judge=judge, segmentation="given", label_mode="first_error")
    run_chunks(run)
    # then the run names the shipped first-error prompt it used, not the judge's step prompt
    assert str(judge.prompt) == "step-default@v1"
    assert str(run.prompt) == "first-error-default@v1"
    records = JudgeVerdict.objects.filter(run=run).values_list("prompt_record", flat=True)
    assert {r["prompt"] for r in records} == {"first-error-default@v1"}


def test_a_prompt_of_the_other_kind_is_refused_never_swapped(demo_audit, make_judge, fake):
    from auditapp.exceptions import ApplicationError

    # given a judge with its own step prompt
    step_prompt = {"name": "mine", "user": "Judge: $step"}
    judge = make_judge(fake.base_url, prompt=step_prompt)
    # when a first-error run is asked for / then refused with the reason; no run is made
    with pytest.raises(ApplicationError, match="is a steps prompt; a first_error run needs") as e:
        run_create(audit=demo_audit, judge=judge, segmentation="given", label_mode="first_error")
    assert e.value.code == "prompt_label_mode"
    # and the other way round: a first-error judge's own prompt asked about single steps
    fe = make_judge(fake.base_url, name="fe", label_mode="first_error", prompt=FIRST_ERROR_PROMPT)
    with pytest.raises(ApplicationError, match="a steps run needs a step prompt"):
        run_create(audit=demo_audit, judge=fe, segmentation="given", label_mode="steps")
    assert not JudgeRun.objects.filter(audit=demo_audit).exists()


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"prompt": FIRST_ERROR_PROMPT},
            'a first_error prompt .* needs "label_mode": "first_error"',
        ),
        (
            {"label_mode": "first_error", "prompt": {"name": "s", "user": "Judge: $step"}},
            'a steps prompt .* needs "label_mode": "steps"',
        ),
        (
            {"label_mode": "first_error", "prompt": {"name": "x", "user": "$steps then $context"}},
            r"unknown placeholder '\$context'.*allowed: \$categories, \$final_answer, \$n_steps",
        ),
        (
            {"prompt": {"name": "step-default", "user": "Judge: $step"}},
            "the shipped prompt's; choose another name",
        ),
        (
            {
                "label_mode": "first_error",
                "prompt": {**FIRST_ERROR_PROMPT, "name": "first-error-default"},
            },
            "the shipped prompt's",
        ),
    ],
    ids=[
        "first-error-prompt-steps-mode",
        "step-prompt-first-error",
        "placeholder",
        "shipped",
        "shipped-fe",
    ],
)
def test_a_spec_whose_prompt_does_not_fit_its_mode_is_rejected(fake, make_judge, change, message):
    with pytest.raises(JudgeSpecError, match=message) as e:
        make_judge(fake.base_url, **change)
    assert e.value.field.startswith("prompt")
