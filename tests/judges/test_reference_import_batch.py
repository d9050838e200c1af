"""Reference runs, imported verdicts, the batch-API round trip and the report's long table."""

import json

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from annotations.models import Condition, Step
from auditapp.exceptions import ImportRejected
from judges.models import JudgeFailure, JudgeRun, JudgeVerdict
from judges.selectors import verdicts_long_table
from judges.services import (
    batch_requests_export,
    batch_results_import,
    batch_run_create,
    reference_run_create,
    verdicts_import,
)

pytestmark = pytest.mark.django_db


def test_a_reference_run_holds_every_imported_reference_verdict(demo_audit):
    # given
    expected = dict(
        Step.objects.filter(
            audit=demo_audit, segmentation="given", reference_verdict__isnull=False
        ).values_list("pk", "reference_verdict")
    )
    assert expected
    # when
    run = reference_run_create(audit=demo_audit, segmentation="given")
    # then
    assert run.status == JudgeRun.Status.DONE and run.done == run.total == len(expected)
    assert dict(JudgeVerdict.objects.filter(run=run).values_list("step_id", "verdict")) == expected


def test_the_long_table_uses_blind_codes_until_unblinded(demo_audit):
    # given
    reference_run_create(audit=demo_audit, segmentation="given")
    codes = set(Condition.objects.filter(audit=demo_audit).values_list("blind_code", flat=True))
    names = set(Condition.objects.filter(audit=demo_audit).values_list("name", flat=True))
    # when
    rows = list(verdicts_long_table(demo_audit))
    # then
    assert rows and {r["condition"] for r in rows} == codes
    assert {r["evaluator_kind"] for r in rows} == {"reference"}
    assert set(rows[0]) >= {
        "step_id", "trace_id", "question_id", "condition", "evaluator", "evaluator_kind",
        "verdict", "error_category",
    }  # fmt: skip
    # when unblinded
    demo_audit.unblinded_at = timezone.now()
    demo_audit.save()
    assert {r["condition"] for r in verdicts_long_table(demo_audit)} == names


def test_the_latest_run_of_a_judge_wins_in_the_long_table(demo_audit):
    # given two reference runs over the same steps
    reference_run_create(audit=demo_audit, segmentation="given")
    latest = reference_run_create(audit=demo_audit, segmentation="given")
    # when
    rows = list(verdicts_long_table(demo_audit))
    # then
    assert len(rows) == latest.total and {r["run_id"] for r in rows} == {latest.pk}


def _lines(*objs):
    return [json.dumps(o) for o in objs]


def test_verdicts_import_writes_a_finished_run(demo_audit):
    # given
    a, b = Step.objects.filter(audit=demo_audit).values_list("public_id", flat=True)[:2]
    lines = _lines(
        {"step_id": a, "verdict": "error", "error_category": "factual error", "rationale": "x"},
        {"step_id": b, "verdict": "correct"},
    )
    # when
    run = verdicts_import(audit=demo_audit, judge_name="external-gpt", lines=lines)
    # then
    assert run.status == JudgeRun.Status.DONE and run.done == run.total == 2
    v = JudgeVerdict.objects.get(run=run, step__public_id=a)
    assert (v.verdict, v.category) == ("error", "factual error")


def test_a_bad_verdicts_file_is_rejected_whole_with_line_numbers(demo_audit, tmp_path):
    # given
    a = Step.objects.filter(audit=demo_audit).values_list("public_id", flat=True)[0]
    path = tmp_path / "verdicts.jsonl"
    path.write_text(
        "\n".join(
            [
                *_lines(
                    {"step_id": a, "verdict": "correct"},
                    {"step_id": "nope", "verdict": "correct"},
                    {"step_id": a, "verdict": "maybe"},
                ),
                "{not json",
            ]
        )
    )
    # when
    with pytest.raises(ImportRejected) as caught:
        verdicts_import(audit=demo_audit, judge_name="x", lines=path.read_text().splitlines())
    with pytest.raises(CommandError, match="line 2: step_id"):
        call_command("import_verdicts", str(path), "--audit", demo_audit.slug, "--judge", "x")
    # then
    problems = {(p["line"], p["field"]) for p in caught.value.extra["problems"]}
    assert {(2, "step_id"), (3, "step_id"), (3, "verdict"), (4, "(line)")} <= problems
    assert not JudgeRun.objects.exists()


def test_batch_api_export_then_import_round_trip(demo_audit, make_judge, tmp_path):
    # given a batch-API run and its exported requests
    judge = make_judge("http://127.0.0.1:9/v1", samples_per_step=1)
    run = batch_run_create(audit=demo_audit, judge=judge, segmentation="given")
    requests = list(batch_requests_export(run=run))
    assert len(requests) == run.total
    first = requests[0]
    assert set(first) == {"custom_id", "method", "url", "body"}
    assert first["method"] == "POST" and first["url"] == "/v1/chat/completions"
    assert Step.objects.filter(public_id=first["custom_id"], audit=demo_audit).exists()
    assert not first["custom_id"].isdigit()
    # when the provider answers all but one, one of them with an error
    outputs = []
    for i, req in enumerate(requests[:-1]):
        if i == 0:
            outputs.append(
                {
                    "custom_id": req["custom_id"],
                    "response": None,
                    "error": {"code": "server_error", "message": "boom"},
                }
            )
            continue
        verdict = "error" if i % 3 == 0 else "correct"
        content = json.dumps({"verdict": verdict, "error_category": None, "rationale": "r"})
        outputs.append({
            "id": f"batch_req_{i}", "custom_id": req["custom_id"],
            "response": {"status_code": 200, "body": {
                "choices": [{"message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5}}},
            "error": None,
        })  # fmt: skip
    path = tmp_path / "out.jsonl"
    path.write_text("\n".join(json.dumps(o) for o in outputs))
    call_command("import_batch_results", str(path), "--run", str(run.pk))
    # then one step remains; re-export asks only for it
    run.refresh_from_db()
    assert run.done == run.total - 2 and run.failed == 1 and run.status == JudgeRun.Status.RUNNING
    assert JudgeFailure.objects.filter(run=run, kind="batch_error").count() == 1
    again = list(batch_requests_export(run=run))
    assert [r["custom_id"] for r in again] == [requests[-1]["custom_id"]]
    verdict = JudgeVerdict.objects.filter(run=run).exclude(prompt_hash="").first()
    assert verdict.prompt_tokens == 10 and len(verdict.prompt_hash) == 64


def test_a_batch_api_run_asks_for_and_reads_log_probabilities(demo_audit, make_judge):
    from judges.clients.fake_server import fake_logprobs

    # given a batch-API run of a judge asking for log-probabilities
    judge = make_judge("http://127.0.0.1:9/v1", logprobs=True, top_logprobs=3)
    run = batch_run_create(audit=demo_audit, judge=judge, segmentation="given")
    requests = list(batch_requests_export(run=run))
    assert all(r["body"]["logprobs"] is True and r["body"]["top_logprobs"] == 3 for r in requests)
    # when the provider answers two steps, one with log-probabilities and one without
    answer = {"verdict": "error", "error_category": None, "rationale": "r"}
    content = json.dumps(answer, separators=(",", ":"))
    lines = []
    for i, req in enumerate(requests[:2]):
        choice = {"message": {"role": "assistant", "content": content}}
        if i == 0:
            choice["logprobs"] = fake_logprobs(content, p_error=0.7, top_logprobs=3)
        body = {"choices": [choice], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
        lines.append(
            json.dumps(
                {
                    "custom_id": req["custom_id"],
                    "response": {"status_code": 200, "body": body},
                    "error": None,
                }
            )
        )
    batch_results_import(run=run, lines=lines)
    # then the first holds its probability, the second none
    records = {
        r.step.public_id: r.prompt_record
        for r in JudgeVerdict.objects.filter(run=run).select_related("step")
    }
    with_lp, without = records[requests[0]["custom_id"]], records[requests[1]["custom_id"]]
    assert with_lp["error_probability"] == pytest.approx(0.7)
    assert "error_probability" not in without and "sample_error_probabilities" not in without


def test_export_batch_requests_command_writes_jsonl(demo_audit, make_judge, tmp_path):
    # given
    make_judge("http://127.0.0.1:9/v1")
    out = tmp_path / "requests.jsonl"
    # when
    call_command(
        "export_batch_requests", "--audit", demo_audit.slug, "--judge", "fake-judge",
        "--segmentation", "given", "--out", str(out),
    )  # fmt: skip
    # then
    lines = out.read_text().splitlines()
    n = Step.objects.filter(audit=demo_audit, segmentation="given").count()
    assert len(lines) == n and json.loads(lines[0])["body"]["model"] == "fake-judge"
