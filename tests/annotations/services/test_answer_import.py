"""Issue 17: answer-only import records for SC@k, ECE and Brier.

The SC@64 shape (64 sampled answers per question and arm, one of them audited step by step)
imports from one file; the answer metrics the report computes from the database match a
computation written here from the records themselves; and no sample ever becomes a step —
not in batches, judge-run scopes, request exports or the blinding check's texts.
"""

import io
import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.urls import reverse

from annotations.models import AnswerSample, BatchItem, ImportJob, Question, Step, Trace
from annotations.services.audits import audit_create
from annotations.services.batches import batch_build
from annotations.services.imports import import_file
from auditapp.agreement.answers import answer_metrics, answer_metrics_by_control
from auditapp.exceptions import ImportRejected
from reports.collect import answers_collect, blinded_texts_collect

pytestmark = pytest.mark.django_db

EXAMPLES = Path(__file__).resolve().parents[3] / "docs" / "examples"
ARMS = ("teacher", "student-before", "student-after")
OPTIONS = {"A": "one", "B": "two", "C": "three", "D": "four"}
# Text only answer-only samples carry: found anywhere a step may go, it is a leak.
SAMPLE_MARKER = "zebra-unaudited-sample"


def sc_records(*, questions: int, k: int, audited_index: int, seed: int = 3) -> list[dict]:
    """The SC@k shape: per question and arm, k samples; sample ``audited_index`` is an audited
    trace, the rest answer-only. The last question is built to tie (two answers, k/2 each)."""
    rng = random.Random(seed)
    records = []
    for q in range(questions):
        gold = "ABCD"[q % 4]
        for a, arm in enumerate(ARMS):
            skill = 0.35 + 0.2 * a
            for s in range(k):
                if q == questions - 1:
                    # a tie: the answer first seen at the lower sample index must win
                    answer = ("C", gold)[(s + a) % 2] if gold != "C" else ("A", gold)[(s + a) % 2]
                else:
                    answer = gold if rng.random() < skill else rng.choice("ABCD")
                record = {
                    "question_id": f"q{q:03d}",
                    "condition": arm,
                    "sample_index": s,
                    "final_answer": answer if rng.random() > 0.02 else "",
                    "dataset": ["set-a", "set-b"][q % 2],
                    "trace_type": "cot",
                }
                if rng.random() > 0.1:
                    record["confidence"] = round(rng.random(), 3)
                if s == audited_index:
                    record |= {
                        "record_type": "trace",
                        "question": f"Question {q}?",
                        "options": OPTIONS,
                        "gold_answer": gold,
                        "trace_id": f"t{q:03d}-{a}",
                        "trace": f"First step of {q}.\n\nSecond step.\n\nSo {answer}.",
                    }
                else:
                    record["record_type"] = "answer"
                    del record["dataset"]  # the question, stated by the trace, has it
                    if s % 7 == 1:
                        record["trace"] = f"{SAMPLE_MARKER} {q} {arm} {s}\n\nnot a step."
                records.append(record)
    return records


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def audit():
    return audit_create(slug="sc", name="Self-consistency")


@pytest.fixture
def sc_audit(audit, tmp_path):
    records = sc_records(questions=12, k=64, audited_index=5)
    result = import_file(
        audit=audit, path=write_jsonl(tmp_path / "sc64.jsonl", records), segmenter_names=None
    )
    return audit, records, result


# --- the SC@64 shape from one file ----------------------------------------------------------
def test_the_sc64_shape_imports_from_one_file(sc_audit):
    # given / when
    audit, records, result = sc_audit
    # then
    traces = [r for r in records if r["record_type"] == "trace"]
    assert (result.n_traces, result.n_samples) == (12 * 3, 12 * 3 * 63)
    assert Trace.objects.filter(audit=audit).count() == 36
    assert AnswerSample.objects.filter(audit=audit).count() == 12 * 3 * 63
    assert Question.objects.filter(audit=audit).count() == 12
    # the steps are the audited traces' paragraphs, nothing more
    assert result.n_steps == Step.objects.filter(audit=audit).count() == 3 * len(traces)
    assert set(Trace.objects.filter(audit=audit).values_list("sample_index", flat=True)) == {5}
    kept = AnswerSample.objects.get(
        audit=audit, question__external_id="q000", condition__name="teacher", sample_index=1
    )
    assert kept.text.startswith(SAMPLE_MARKER) and "\n\nnot a step." in kept.text


def test_examples_in_the_docs_import(audit):
    # when
    jsonl = import_file(audit=audit, path=EXAMPLES / "answers.jsonl")
    other = audit_create(slug="sc-csv", name="CSV")
    csv_result = import_file(audit=other, path=EXAMPLES / "answers.csv")
    # then
    assert (jsonl.n_traces, jsonl.n_samples) == (6, 42)
    assert (csv_result.n_traces, csv_result.n_samples) == (1, 4)
    assert AnswerSample.objects.filter(audit=other, final_answer="B").count() == 1


# --- the answer metrics against a computation written here ---------------------------------
def _independent_metrics(records: list[dict], *, bins: int = 10) -> dict[str, dict]:
    """Accuracy, SC@k (ties to the lowest sample index), ECE and Brier in plain Python."""
    gold = {r["question_id"]: r["gold_answer"] for r in records if "gold_answer" in r}
    out = {}
    for arm in ARMS:
        rows = [r for r in records if r["condition"] == arm]
        correct = [r["final_answer"] == gold[r["question_id"]] for r in rows]
        sc = []
        for q in sorted(gold):
            samples = sorted(
                (r for r in rows if r["question_id"] == q), key=lambda r: r["sample_index"]
            )
            votes = Counter(r["final_answer"] for r in samples if r["final_answer"])
            top = max(votes.values())
            first = next(r["final_answer"] for r in samples if votes.get(r["final_answer"]) == top)
            sc.append(first == gold[q])
        rated = [
            (r["confidence"], c) for r, c in zip(rows, correct, strict=True) if "confidence" in r
        ]
        conf = np.array([c for c, _ in rated])
        hit = np.array([h for _, h in rated], dtype=float)
        ece = 0.0
        for b in range(bins):
            upper = conf < (b + 1) / bins if b < bins - 1 else conf <= 1.0
            inside = (conf >= b / bins) & upper
            if inside.any():
                ece += inside.sum() / len(conf) * abs(hit[inside].mean() - conf[inside].mean())
        out[arm] = {
            "n": len(rows),
            "accuracy": sum(correct) / len(rows),
            "sc_at_k": sum(sc) / len(sc),
            "ece": ece,
            "brier": float(np.mean((conf - hit) ** 2)),
            "n_audited": sum(r["record_type"] == "trace" for r in rows),
        }
    return out


def test_answer_metrics_match_an_independent_computation(sc_audit):
    # given
    audit, records, _ = sc_audit
    expected = _independent_metrics(records)
    # when: what the report reads from the database, under blind codes
    frame = answers_collect(audit)
    metrics = {m.condition: m for m in answer_metrics(frame)}
    # then
    codes = dict(audit.conditions.values_list("name", "blind_code"))
    assert len(frame) == len(records)
    for arm, want in expected.items():
        got = metrics[codes[arm]]
        assert got.n == want["n"] == 64 * 12
        assert got.k_min == got.k_max == 64
        assert got.n_audited == want["n_audited"] == 12
        assert got.audited_sample_indices == (5,)
        assert got.accuracy == pytest.approx(want["accuracy"])
        assert got.sc_at_k == pytest.approx(want["sc_at_k"])
        assert got.ece == pytest.approx(want["ece"])
        assert got.brier == pytest.approx(want["brier"])


def test_brier_agrees_with_scikit_learn(sc_audit):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    # given
    audit, _, _ = sc_audit
    frame = answers_collect(audit)
    # when
    metrics = answer_metrics(frame)
    # then
    for m in metrics:
        rows = frame[(frame["condition"] == m.condition) & frame["confidence"].notna()]
        truth = (rows["answer"] == rows["gold"]).to_numpy(dtype=int)
        assert m.brier == pytest.approx(
            sklearn_metrics.brier_score_loss(truth, rows["confidence"].to_numpy())
        )


def test_answer_metrics_per_control_use_every_sample(sc_audit):
    # given
    audit, records, _ = sc_audit
    # when
    rows = answer_metrics_by_control(answers_collect(audit))
    # then
    by_dataset = [r for r in rows if r["control"] == "dataset"]
    assert {r["value"] for r in by_dataset} == {"set-a", "set-b"}
    assert sum(r["n"] for r in by_dataset) == len(records)
    expected_a = _independent_metrics([r for r in records if int(r["question_id"][1:]) % 2 == 0])
    codes = dict(audit.conditions.values_list("name", "blind_code"))
    for arm, want in expected_a.items():
        got = next(r for r in by_dataset if r["value"] == "set-a" and r["condition"] == codes[arm])
        assert got["sc_at_k"] == pytest.approx(want["sc_at_k"])
        assert got["brier"] == pytest.approx(want["brier"])


def test_the_report_says_samples_used_traces_audited_and_their_index(sc_audit):
    from reports.render import _tables
    from reports.services import report_build

    # given
    audit, _, _ = sc_audit
    # when
    report = report_build(audit=audit, resamples=50)
    # then
    rows = report["answer_metrics"]
    assert [(r["n"], r["n_audited"], r["audited_sample_indices"]) for r in rows] == [
        (768, 12, [5])
    ] * 3
    assert {r["control"] for r in report["answer_metrics_by_control"]} == {"dataset", "trace_type"}
    table = _tables(report)["answer_metrics"]
    assert table.columns[:4] == ["condition", "samples", "audited", "audited sample"]
    assert table.rows[0][1:4] == ["768", "12", "5"]


# --- no sample is ever a step ---------------------------------------------------------------
def test_no_sample_becomes_a_step_anywhere(sc_audit, admin_user, tmp_path):
    from judges.services import judge_create_or_update
    from judges.services.runs import _scope_steps
    from tests.judges.conftest import judge_spec

    # given
    audit, _, _ = sc_audit
    trace_pks = set(Trace.objects.filter(audit=audit).values_list("pk", flat=True))
    n_steps = Step.objects.filter(audit=audit).count()
    # when: a batch of every step, a judge run's scope, the request export, the blinding texts
    batch = batch_build(
        audit=audit, name="all", size=n_steps, segmentation="paragraphs", created_by=admin_user
    )
    scope = _scope_steps(audit=audit)
    judge_create_or_update(spec=judge_spec("http://127.0.0.1:9/v1"))
    out = tmp_path / "requests.jsonl"
    call_command("export_batch_requests", "--audit", audit.slug, "--judge", "fake-judge",
                 "--out", str(out))  # fmt: skip
    texts = blinded_texts_collect(audit, segmentation=None, seed=1)
    # then
    items = BatchItem.objects.filter(batch=batch)
    assert items.count() == n_steps
    assert set(items.values_list("step__trace_id", flat=True)) <= trace_pks
    assert scope.count() == n_steps
    assert set(scope.values_list("trace_id", flat=True)) == trace_pks
    requests = out.read_text()
    assert len(requests.splitlines()) == n_steps
    assert SAMPLE_MARKER not in requests
    assert len(texts) == n_steps and not texts["text"].str.contains(SAMPLE_MARKER).any()
    assert not Step.objects.filter(text__contains=SAMPLE_MARKER).exists()


# --- bad input: a line, a reason, nothing written ------------------------------------------
def _answer(**overrides) -> dict:
    base = {
        "record_type": "answer",
        "question_id": "q1",
        "condition": "teacher",
        "sample_index": 1,
        "final_answer": "B",
        "confidence": 0.5,
    }
    return {k: v for k, v in {**base, **overrides}.items() if v is not None}


TRACE = {
    "question_id": "q1",
    "question": "Which?",
    "gold_answer": "B",
    "condition": "teacher",
    "trace_id": "t1",
    "trace": "One.\n\nTwo.",
}


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (_answer(sample_index=None), "line 2 (sample_index): is required on an answer-only"),
        (_answer(sample_index=-1), "line 2 (sample_index): must be a whole number"),
        (_answer(confidence=1.5), "line 2 (confidence): must be a number from 0 to 1"),
        (_answer(trace_id="t9"), "line 2 (trace_id): is not allowed on an answer-only record"),
        (_answer(steps=["a"]), "line 2 (steps): is not allowed on an answer-only record"),
        (_answer(record_type="sample"), "line 2 (record_type): must be one of trace, answer"),
        (_answer(colour="red"), "line 2: unknown field(s) colour"),
        (_answer(question_id="q2"), "line 2 (question): question 'q2' is stated by no record"),
        (_answer(gold_answer="C"), "line 2 (gold_answer): gives gold_answer without 'question'"),
        (_answer(question="Other?"), "line 2 (question_id): question 'q1' differs from line 1"),
        (
            _answer(sample_index=0),
            "line 2 (sample_index): sample_index 0 of question 'q1' under "
            "condition 'teacher' is already the audited trace's at line 1",
        ),
        (_answer(final_answer="x\u0000"), "line 2 (final_answer): contains a NUL"),
        (_answer(final_answer="x" * 201), "line 2 (final_answer): is longer than 200"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None,
)
def test_a_bad_answer_record_rejects_the_file_with_its_line(audit, tmp_path, bad, expected):
    # given
    path = write_jsonl(tmp_path / "bad.jsonl", [TRACE, bad, _answer(sample_index=2)])
    # when
    with pytest.raises(ImportRejected) as caught:
        import_file(audit=audit, path=path)
    # then
    assert any(str(p).startswith(expected) for p in caught.value.problems), caught.value.problems
    assert not Trace.objects.exists() and not AnswerSample.objects.exists()
    assert not Question.objects.exists()


def test_a_doubled_sample_is_refused_with_both_lines(audit, tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [TRACE, _answer(), _answer(final_answer="C")])
    with pytest.raises(ImportRejected) as caught:
        import_file(audit=audit, path=path)
    assert [str(p) for p in caught.value.problems] == [
        "line 3 (sample_index): sample_index 1 of question 'q1' under condition 'teacher' is "
        "already the answer-only sample's at line 2"
    ]


def test_csv_rows_are_checked_by_line_too(audit, tmp_path):
    # given: an answer-only CSV needs neither trace_id nor trace columns
    path = tmp_path / "a.csv"
    path.write_text(
        "record_type,question_id,question,gold_answer,condition,sample_index,final_answer,"
        "confidence\n"
        "answer,q1,Which?,B,teacher,0,B,0.9\n"
        "answer,q1,,,teacher,1,C,nan\n"
        "answer,q1,,,teacher,2,B,.5\n"
    )
    # when
    with pytest.raises(ImportRejected) as caught:
        import_file(audit=audit, path=path)
    # then
    assert [str(p) for p in caught.value.problems] == [
        "line 3, column 8 (confidence): must be a number from 0 to 1"
    ]
    path.write_text(path.read_text().replace(",nan", ",0.25"))
    assert import_file(audit=audit, path=path).n_samples == 3


def test_reimport_refuses_or_skips_samples_already_imported(audit, tmp_path):
    # given
    path = write_jsonl(tmp_path / "s.jsonl", [TRACE, _answer(), _answer(sample_index=2)])
    import_file(audit=audit, path=path)
    # when / then
    with pytest.raises(ImportRejected) as caught:
        import_file(audit=audit, path=path)
    assert "line 2 (sample_index): this sample" in str(caught.value.problems[1])
    again = import_file(audit=audit, path=path, skip_existing=True)
    assert (again.n_traces, again.n_samples, again.n_samples_skipped) == (0, 0, 2)
    assert AnswerSample.objects.filter(audit=audit).count() == 2


def test_a_later_file_may_refer_to_questions_imported_before(audit, tmp_path):
    import_file(audit=audit, path=write_jsonl(tmp_path / "t.jsonl", [TRACE]))
    result = import_file(audit=audit, path=write_jsonl(tmp_path / "a.jsonl", [_answer()]))
    assert result.n_samples == 1 and result.n_steps == 0


def test_the_upload_api_imports_answer_only_samples(
    api_client, admin_user, audit, celery_eager, django_capture_on_commit_callbacks
):
    # given
    api_client.force_authenticate(admin_user)
    content = "".join(json.dumps(r) + "\n" for r in [TRACE, _answer(), _answer(sample_index=2)])
    handle = io.BytesIO(content.encode())
    handle.name = "mixed.jsonl"
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client.post(
            reverse("annotations-api:api-import-create", args=[audit.slug]),
            {"file": handle},
            format="multipart",
        )
    # then
    assert response.status_code == 202, response.content
    job = ImportJob.objects.get(pk=response.json()["id"])
    assert (job.status, job.n_traces, job.n_samples) == ("done", 1, 2)
    detail = api_client.get(reverse("annotations-api:api-import-detail", args=[job.pk])).json()
    assert detail["n_samples"] == 2


def test_the_answers_export_reads_back_to_the_same_metrics(sc_audit, tmp_path):
    from auditapp.agreement.formats import answers_read

    # given
    audit, _, _ = sc_audit
    frame = answers_collect(audit)
    path = tmp_path / "answers.csv"
    frame.to_csv(path, index=False)
    # when
    again = answers_read(path)
    # then
    assert again["audited"].sum() == 36 and (~again["audited"]).sum() == 36 * 63
    assert answer_metrics(again) == answer_metrics(frame)
