"""Issue 14, traces in from the tools that make them: Inspect AI eval logs (real logs, made with
its mockllm model and read with its own log API), lm-evaluation-harness ``--log_samples`` JSONL
and chat-format JSONL, each mapped to the documented fields and checked by line; and judge
verdicts out as an Inspect-readable score table."""

import csv
import io
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from annotations.models import ImportJob, Step, Trace
from annotations.services.audits import audit_create
from annotations.services.imports import import_file
from auditapp.exceptions import ImportRejected

pytestmark = pytest.mark.django_db

QUESTIONS = [("q1", "What is 1+1?", "2"), ("q2", "What is 2+2?", "4"), ("q3", "What is 3+3?", "6")]


def make_inspect_log(log_dir: Path, *, epochs: int = 2) -> Path:
    """A real eval log: three samples × ``epochs``, the mock model answering with reasoning."""
    from inspect_ai import Task
    from inspect_ai import eval as inspect_eval
    from inspect_ai.dataset import Sample
    from inspect_ai.model import (
        ContentReasoning,
        ContentText,
        ModelOutput,
        ModelUsage,
        get_model,
    )
    from inspect_ai.scorer import match
    from inspect_ai.solver import generate

    def output(answer: str, reasoning: str) -> ModelOutput:
        out = ModelOutput.from_content(
            model="mockllm/model",
            content=[ContentReasoning(reasoning=reasoning), ContentText(text=answer)],
        )
        # Given, so the mock model does not count tokens (tiktoken would download a table).
        out.usage = ModelUsage(input_tokens=5, output_tokens=5, total_tokens=10)
        return out

    answers = {"q1": "2", "q2": "5", "q3": "6"}
    outputs = [
        output(f"The answer is {answers[q]}", f"Add {q} once.\n\nThen check it.")
        for _ in range(epochs)
        for q, _, _ in QUESTIONS
    ]
    task = Task(
        dataset=[Sample(input=text, target=gold, id=q) for q, text, gold in QUESTIONS],
        solver=[generate()],
        scorer=match(),
    )
    model = get_model("mockllm/model", custom_outputs=outputs)
    (log,) = inspect_eval(task, model=model, log_dir=str(log_dir), epochs=epochs, display="none")
    assert log.status == "success", log.error
    return Path(log.location)


@pytest.fixture(scope="module")
def inspect_log(tmp_path_factory):
    pytest.importorskip("inspect_ai")  # a declared dependency; the other formats need none
    return make_inspect_log(tmp_path_factory.mktemp("inspect"))


@pytest.fixture
def audit():
    return audit_create(slug="tools", name="Traces from tools")


# --- Inspect AI ---------------------------------------------------------------------------------
def test_an_inspect_log_imports_every_sample_and_epoch(audit, inspect_log):
    # when: detected from the .eval name
    result = import_file(audit=audit, path=inspect_log)
    # then
    assert (result.n_traces, result.n_steps) == (6, 18)
    traces = Trace.objects.filter(audit=audit).select_related("question", "condition")
    by_key = {(t.question.external_id, t.sample_index): t for t in traces}
    assert set(by_key) == {(q, e) for q, _, _ in QUESTIONS for e in (0, 1)}
    first = by_key[("q1", 0)]
    assert first.condition.name == "mockllm/model"
    assert (first.question.stem, first.question.gold_answer) == ("What is 1+1?", "2")
    # the reasoning first, then the visible answer, each a paragraph (a step)
    assert first.text == "Add q1 once.\n\nThen check it.\n\nThe answer is 2"
    assert first.metadata["inspect"]["sample_id"] == "q1"
    assert first.metadata["inspect"]["epoch"] == 1
    assert first.metadata["inspect"]["scores"] == {"match": "C"}
    assert by_key[("q2", 1)].metadata["inspect"]["scores"] == {"match": "I"}


def test_an_inspect_sample_that_maps_to_a_bad_record_is_refused_by_its_position(audit, tmp_path):
    pytest.importorskip("inspect_ai")
    from inspect_ai import Task
    from inspect_ai import eval as inspect_eval
    from inspect_ai.dataset import Sample
    from inspect_ai.model import ModelOutput, ModelUsage, get_model
    from inspect_ai.solver import generate

    # given: the second sample's model output is empty (nothing to audit)
    outputs = []
    for text in ("Two.\n\nSo 2", ""):
        out = ModelOutput.from_content(model="mockllm/model", content=text)
        out.usage = ModelUsage(input_tokens=1, output_tokens=1, total_tokens=2)
        outputs.append(out)
    task = Task(
        dataset=[
            Sample(input="1+1?", target="2", id="a"),
            Sample(input="2+2?", target="4", id="b"),
        ],
        solver=[generate()],
    )
    model = get_model("mockllm/model", custom_outputs=outputs)
    (log,) = inspect_eval(task, model=model, log_dir=str(tmp_path), display="none")
    # when
    with pytest.raises(ImportRejected) as caught:
        import_file(audit=audit, path=Path(log.location), file_format="inspect")
    # then
    assert [str(p) for p in caught.value.problems] == ["line 2 (trace): is required"]
    assert not Trace.objects.exists()


def test_a_broken_inspect_log_is_one_line_of_reason(audit, tmp_path):
    path = tmp_path / "broken.eval"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ImportRejected) as caught:
        import_file(audit=audit, path=path)
    (problem,) = caught.value.problems
    assert str(problem).startswith("file: not an Inspect eval log")
    assert not Trace.objects.exists()


def test_the_command_says_which_format_it_detected(audit, inspect_log, capsys):
    call_command("import_traces", str(inspect_log), "--audit", audit.slug, "--no-progress")
    captured = capsys.readouterr()
    assert "read as inspect (detected from the file; pass --format to choose)" in captured.err
    assert "Imported 6 traces" in captured.out


# --- lm-evaluation-harness ------------------------------------------------------------------------
def lm_eval_line(doc_id: int, responses: list[str], *, filter_name: str = "strict-match"):
    return {
        "doc_id": doc_id,
        "doc": {"question": f"Natalia sold {doc_id} clips. How many?", "answer": f"#### {doc_id}"},
        "target": str(doc_id),
        "arguments": {"gen_args_0": {"arg_0": "Question: ...", "arg_1": {"until": ["\n\n"]}}},
        "resps": [responses],
        "filtered_resps": [r.rsplit(" ", 1)[-1] for r in responses],
        "filter": filter_name,
        "metrics": ["exact_match"],
        "doc_hash": "abc",
        "exact_match": 1.0,
    }


def test_lm_eval_samples_import_one_trace_per_response(audit, tmp_path):
    # given: two documents, two responses each, and the same documents under a second filter
    path = tmp_path / "samples_gsm8k_2026-12-01T10-00-00.000000.jsonl"
    lines = [
        lm_eval_line(1, ["One clip.\n\nSo 1", "Maybe.\n\nSo 2"]),
        lm_eval_line(2, ["Two.\n\nSo 2", "Two again.\n\nSo 2"]),
        lm_eval_line(1, ["One clip.\n\nSo 1", "Maybe.\n\nSo 2"], filter_name="flexible"),
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    # when
    result = import_file(audit=audit, path=path, condition="llama-3-8b")
    # then
    assert (result.n_traces, result.n_steps) == (4, 8)
    trace = Trace.objects.get(audit=audit, external_id="gsm8k:1:1")
    assert (trace.sample_index, trace.final_answer, trace.condition.name) == (1, "2", "llama-3-8b")
    assert trace.question.stem == "Natalia sold 1 clips. How many?"
    assert (trace.question.gold_answer, trace.question.dataset) == ("1", "gsm8k")
    assert trace.answer_correct is False
    assert trace.metadata["lm_eval"]["metrics"] == {"exact_match": 1.0}


def test_lm_eval_problems_have_their_lines(audit, tmp_path):
    # given
    path = tmp_path / "samples_mmlu_2026-12-01T10-00-00.jsonl"
    loglikelihood = {**lm_eval_line(2, ["x"]), "resps": [[["-1.5", "False"]]]}
    path.write_text(
        json.dumps(lm_eval_line(1, ["ok\n\nSo 1"])) + "\n" + json.dumps(loglikelihood) + "\n"
    )
    # when / then: no condition, then a loglikelihood line
    with pytest.raises(ImportRejected) as caught:
        import_file(audit=audit, path=path, file_format="lm-eval")
    assert "do not name the model" in str(caught.value.problems[0])
    with pytest.raises(ImportRejected) as caught:
        import_file(audit=audit, path=path, file_format="lm-eval", condition="m")
    assert [str(p).split(":")[0] for p in caught.value.problems] == ["line 2"]
    assert "a loglikelihood task" in str(caught.value.problems[0])
    assert not Trace.objects.exists()


# --- chat-format JSONL --------------------------------------------------------------------------
def test_chat_lines_and_batch_outputs_import_with_the_reasoning(audit, tmp_path):
    # given: a conversation with reasoning_content, one with <think>, and an OpenAI/vLLM batch
    # output line that also carries its request's messages
    user = {"role": "user", "content": "Which artery supplies the inferior wall?"}
    lines = [
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                user,
                {
                    "role": "assistant",
                    "content": "The right coronary artery.",
                    "reasoning_content": "II, III, aVF are inferior.\n\nThe RCA supplies it.",
                },
            ],
            "condition": "teacher",
            "question_id": "mi-1",
            "trace_id": "c1",
            "gold_answer": "RCA",
            "final_answer": "RCA",
        },
        {
            "messages": [
                user,
                {"role": "assistant", "content": "<think>Inferior leads.</think>It is the RCA."},
            ],
            "model": "student",
            "question_id": "mi-1",
            "trace_id": "c2",
            "gold_answer": "RCA",
        },
        {
            "id": "batch_req_1",
            "custom_id": "c3",
            "messages": [user],
            "response": {
                "status_code": 200,
                "body": {
                    "model": "student-after",
                    "choices": [{"message": {"role": "assistant", "content": "LAD, surely."}}],
                },
            },
            "error": None,
        },
    ]
    path = tmp_path / "chats.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    # when
    result = import_file(audit=audit, path=path)
    # then
    assert result.n_traces == 3
    traces = {t.external_id: t for t in Trace.objects.filter(audit=audit)}
    assert traces["c1"].text == (
        "II, III, aVF are inferior.\n\nThe RCA supplies it.\n\nThe right coronary artery."
    )
    assert traces["c1"].condition.name == "teacher" and traces["c1"].answer_correct is True
    assert traces["c2"].text == "Inferior leads.\n\nIt is the RCA."
    assert traces["c2"].condition.name == "student"
    assert traces["c3"].condition.name == "student-after"
    assert traces["c3"].question.stem == user["content"]


def test_chat_problems_have_their_lines(audit, tmp_path):
    path = tmp_path / "chats.jsonl"
    good = {"messages": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]}
    no_answer = {"messages": [{"role": "user", "content": "Q?"}], "model": "m"}
    failed = {"custom_id": "x", "response": None, "error": {"message": "rate limited"}}
    path.write_text(
        "\n".join(json.dumps(r) for r in [{**good, "model": "m"}, no_answer, failed]) + "\n"
    )
    with pytest.raises(ImportRejected) as caught:
        import_file(audit=audit, path=path, file_format="chat")
    assert [str(p) for p in caught.value.problems] == [
        "line 2: no assistant message: nothing to audit",
        "line 3: the request failed: {'message': 'rate limited'}",
    ]


def test_the_api_takes_a_format_and_a_condition(
    api_client, admin_user, audit, celery_eager, django_capture_on_commit_callbacks, tmp_path
):
    # given
    api_client.force_authenticate(admin_user)
    handle = io.BytesIO((json.dumps(lm_eval_line(7, ["Seven.\n\nSo 7"])) + "\n").encode())
    handle.name = "samples.jsonl"
    url = reverse("annotations-api:api-import-create", args=[audit.slug])
    # when
    unknown = api_client.post(url, {"file": handle, "format": "parquet"}, format="multipart")
    handle.seek(0)
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client.post(
            url, {"file": handle, "format": "lm-eval", "condition": "m"}, format="multipart"
        )
    # then
    assert unknown.status_code == 400
    assert response.status_code == 202, response.content
    job = ImportJob.objects.get(pk=response.json()["id"])
    assert (job.status, job.file_format, job.n_traces) == ("done", "lm-eval", 1)
    assert Trace.objects.get(audit=audit).condition.name == "m"


# --- verdicts out as an Inspect score table -----------------------------------------------------
def test_judge_verdicts_export_as_inspect_scores(audit, inspect_log, tmp_path):
    from inspect_ai.log import read_eval_log
    from inspect_ai.scorer import Score, value_to_float

    from judges.services.io import verdicts_import

    # given: the log imported, a judge that calls the second step of q2's traces wrong
    import_file(audit=audit, path=inspect_log)
    lines = [
        json.dumps(
            {
                "step_id": s.public_id,
                "verdict": "error"
                if (s.trace.question.external_id, s.index) == ("q2", 1)
                else "abstain"
                if s.trace.question.external_id == "q3"
                else "correct",
            }
        )
        for s in Step.objects.filter(audit=audit).select_related("trace__question")
    ]
    run = verdicts_import(audit=audit, judge_name="ext", lines=lines)
    # when
    call_command("export_inspect_scores", "--run", str(run.pk), "--out", str(tmp_path / "s.json"))
    call_command("export_inspect_scores", "--run", str(run.pk), "--out", str(tmp_path / "s.csv"))
    # then
    rows = json.loads((tmp_path / "s.json").read_text())
    log = read_eval_log(str(inspect_log))
    keys = {(log.eval.eval_id, s.id, s.epoch) for s in log.samples}
    assert {(r["eval_id"], r["sample_id"], r["epoch"]) for r in rows} == keys
    to_float = value_to_float()
    for row in rows:
        score = Score.model_validate(row["score"])  # Inspect reads it as its own
        want = {"q1": "C", "q2": "I", "q3": "N"}[row["sample_id"]]
        assert score.value == want and row["scorer"] == "stepaudit/ext"
        assert to_float(score.value) == {"C": 1.0, "I": 0.0, "N": 0.0}[want]
        if want == "I":
            assert score.metadata["first_error_step"] == 1 and score.metadata["errors"] == 1
    table = list(csv.DictReader(io.StringIO((tmp_path / "s.csv").read_text())))
    assert len(table) == 6 and {r["value"] for r in table} == {"C", "I", "N"}
    with pytest.raises(CommandError, match=r"name the file \.json or \.csv"):
        call_command("export_inspect_scores", "--run", str(run.pk), "--out", "x.txt")


def test_the_import_page_offers_the_formats_and_takes_a_condition(
    client, admin_user, audit, celery_eager, django_capture_on_commit_callbacks
):
    # given
    client.force_login(admin_user)
    url = reverse("annotations:import", args=[audit.slug])
    form = client.get(url).content.decode()
    handle = io.BytesIO((json.dumps(lm_eval_line(3, ["Three.\n\nSo 3"])) + "\n").encode())
    handle.name = "from-harness.jsonl"
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"file": handle, "format": "lm-eval", "condition": "arm-x"})
    # then
    for label in ("Inspect AI eval log", "lm-evaluation-harness", "Chat JSONL"):
        assert label in form
    assert response.status_code == 302
    job = ImportJob.objects.get(audit=audit)
    assert (job.status, job.file_format, job.condition) == ("done", "lm-eval", "arm-x")
    assert Trace.objects.get(audit=audit).condition.name == "arm-x"
