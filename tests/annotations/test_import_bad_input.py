"""Issue 9, "bad input never gives a 500", for imports: each input that once gave a server error
(or a job failing late, without a line) tried as an admin would send it — through the API, the
upload page and the command — and, on PostgreSQL, the proof that the database would have refused
what validation now refuses."""

import io
import json

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import DataError, transaction
from django.test import override_settings
from django.urls import reverse

from annotations.models import Audit, Condition, ImportJob, Question, Step, Trace
from annotations.services.audits import audit_create
from auditapp.exceptions import ImportRejected

pytestmark = pytest.mark.django_db

NUL = "\u0000"
MIB = 2**20


@pytest.fixture
def audit():
    return audit_create(slug="bad", name="Bad input")


@pytest.fixture
def upload_dir(settings, tmp_path):
    """Uploads are stored under VAR_DIR/imports: a directory of this test's own."""
    settings.VAR_DIR = tmp_path
    return tmp_path / "imports"


def stored_uploads(upload_dir) -> list:
    return sorted(upload_dir.glob("*")) if upload_dir.exists() else []


def upload(name: str, content: bytes | str) -> io.BytesIO:
    handle = io.BytesIO(content.encode() if isinstance(content, str) else content)
    handle.name = name
    return handle


def line(i: int, **overrides) -> str:
    base = {
        "question_id": f"q{i}",
        "question": "Which is it?",
        "condition": "teacher",
        "trace_id": f"t{i}",
        "trace": "First.\n\nSecond.",
    }
    return json.dumps({**base, **overrides})


def jsonl_of_size(size: int) -> bytes:
    """A valid JSONL file of exactly ``size`` bytes, traces of four paragraphs."""
    paragraph = "The finding is specific to the condition named in the stem. " * 20
    trace = "\n\n".join([paragraph] * 4)
    lines, total, i = [], 0, 0
    while True:
        row = line(i, trace=trace).encode() + b"\n"
        if total + len(row) + 200 > size:
            break
        lines.append(row)
        total += len(row)
        i += 1
    last = line(i, trace="Last.", metadata={"pad": ""}).encode() + b"\n"
    pad = size - total - len(last)
    lines.append(line(i, trace="Last.", metadata={"pad": "x" * pad}).encode() + b"\n")
    content = b"".join(lines)
    assert len(content) == size
    return content


def api_import(api_client, content, *, name="t.jsonl", **fields):
    return api_client.post(
        reverse("annotations-api:api-import-create", args=["bad"]),
        {"file": upload(name, content), **fields},
        format="multipart",
    )


# --- 1. size: a large valid file imports; one over the limit is a 413 with a reason ---------
@pytest.mark.slow
def test_a_valid_10_mib_upload_through_the_api_is_imported(
    api_client, admin_user, audit, upload_dir, celery_eager, django_capture_on_commit_callbacks
):
    # given a file four times FILE_UPLOAD_MAX_MEMORY_SIZE: Django spools it to a temporary file
    # (which request.data.copy() used to deep-copy: a 500)
    api_client.force_authenticate(admin_user)
    content = jsonl_of_size(10 * MIB)
    n_lines = content.count(b"\n")
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = api_import(api_client, content, segmenter="paragraphs")
    # then
    assert response.status_code == 202, response.content[:500]
    job = ImportJob.objects.get()
    assert (job.status, job.n_traces) == (ImportJob.Status.DONE, n_lines), job.message
    assert Trace.objects.filter(audit=audit).count() == n_lines
    assert stored_uploads(upload_dir) == []  # the worker removed the stored file


def test_a_3_mib_upload_through_the_page_is_queued(client, admin_user, audit, upload_dir):
    # given a file just over FILE_UPLOAD_MAX_MEMORY_SIZE, sent from the upload page
    client.force_login(admin_user)
    # when
    response = client.post(
        reverse("annotations:import", args=["bad"]),
        {"file": upload("t.jsonl", jsonl_of_size(3 * MIB))},
    )
    # then
    assert response.status_code == 302, response.content[:500]
    assert ImportJob.objects.get().status == ImportJob.Status.QUEUED


def test_the_upload_page_without_a_file_is_a_400_with_the_form_error(client, admin_user, audit):
    # given
    client.force_login(admin_user)
    # when the form is posted without a file
    response = client.post(reverse("annotations:import", args=["bad"]), {})
    # then the page says what is missing, with a 4xx, and nothing is queued
    assert response.status_code == 400
    assert "This field is required" in response.content.decode()
    assert not ImportJob.objects.exists()


def test_an_upload_of_exactly_the_limit_is_accepted(api_client, admin_user, audit, upload_dir):
    api_client.force_authenticate(admin_user)
    with override_settings(STEPAUDIT_MAX_UPLOAD_BYTES=MIB):
        response = api_import(api_client, jsonl_of_size(MIB))
    assert response.status_code == 202, response.content[:500]


@pytest.mark.parametrize(
    ("size", "reason"),
    [
        pytest.param(
            MIB + 1, "the file is over the upload limit of 1,048,576 bytes", id="one-over"
        ),
        pytest.param(3 * MIB, "the request declares", id="declared-far-over"),
    ],
)
def test_an_upload_over_the_limit_is_a_413_with_a_reason_and_nothing_kept(
    api_client, admin_user, audit, upload_dir, size, reason
):
    # given
    api_client.force_authenticate(admin_user)
    # when
    with override_settings(STEPAUDIT_MAX_UPLOAD_BYTES=MIB):
        response = api_import(api_client, jsonl_of_size(size))
    # then
    assert response.status_code == 413
    body = response.json()
    assert body["code"] == "import_too_large"
    assert "upload limit of 1,048,576 bytes" in body["message"]
    (problem,) = body["extra"]["problems"]
    assert reason in problem["message"]
    assert "STEPAUDIT_MAX_UPLOAD_BYTES" in problem["message"]
    assert not ImportJob.objects.exists()
    assert stored_uploads(upload_dir) == []


def test_an_upload_over_the_limit_on_the_page_is_a_413_with_the_reason(
    client, admin_user, audit, upload_dir
):
    client.force_login(admin_user)
    with override_settings(STEPAUDIT_MAX_UPLOAD_BYTES=MIB):
        response = client.post(
            reverse("annotations:import", args=["bad"]),
            {"file": upload("t.jsonl", jsonl_of_size(MIB + 10))},
        )
    assert response.status_code == 413
    assert "over the upload limit of 1,048,576 bytes" in response.content.decode()
    assert not ImportJob.objects.exists()
    assert stored_uploads(upload_dir) == []


# --- 2. a missing job is a 404, on the page and in the API ------------------------------------
@pytest.mark.parametrize("job_id", [999, 2**31, 10**30], ids=["missing", "2^31", "10^30"])
def test_a_missing_import_job_is_a_404_on_the_page_and_in_the_api(
    client, api_client, admin_user, job_id
):
    # given
    client.force_login(admin_user)
    api_client.force_authenticate(admin_user)
    # when
    page = client.get(reverse("annotations:import-job", args=[job_id]))
    api = api_client.get(reverse("annotations-api:api-import-detail", args=[job_id]))
    # then
    assert page.status_code == 404
    assert api.status_code == 404
    assert api.json()["code"] == "not_found"


# --- 3.–6. values the database refuses: a 400 by line and field, before any job ---------------
CSV_HEAD = "question_id,question,condition,trace_id,trace,sample_index\n"


@pytest.mark.parametrize(
    ("name", "content", "place"),
    [
        pytest.param(
            "t.csv", CSV_HEAD + "q1,Q,c,t1,Text.,\u00b2\n", (2, 6, "sample_index"), id="csv-²"
        ),
        pytest.param(
            "t.csv", CSV_HEAD + f"q1,Q,c,t1,Text.,{2**31}\n", (2, 6, "sample_index"), id="csv-2^31"
        ),
        pytest.param(
            "t.csv",
            CSV_HEAD + f"q1,Q,c,t1,Text.,{10**24}\n",
            (2, 6, "sample_index"),
            id="csv-10^24",
        ),
        pytest.param(
            "t.jsonl",
            line(0) + "\n" + line(1, sample_index=2**31),
            (2, None, "sample_index"),
            id="jsonl-2^31",
        ),
        pytest.param(
            "t.jsonl",
            line(0) + "\n" + line(1, trace=f"A{NUL}B"),
            (2, None, "trace"),
            id="jsonl-nul-trace",
        ),
        pytest.param(
            "t.jsonl", line(0, metadata={"m": NUL}), (1, None, "metadata"), id="jsonl-nul-metadata"
        ),
        pytest.param(
            "t.csv", CSV_HEAD + f"q1,Q,c,t{NUL}1,Text.,1\n", (2, 4, "trace_id"), id="csv-nul-id"
        ),
        pytest.param(
            "t.jsonl", line(0, confidence=1e308), (1, None, "confidence"), id="jsonl-huge-float"
        ),
        pytest.param(
            "t.jsonl", line(0, trace_id="t" * 201), (1, None, "trace_id"), id="jsonl-long-id"
        ),
    ],
)
def test_a_value_the_database_refuses_is_a_400_by_line_and_field_before_any_job(
    api_client, admin_user, audit, upload_dir, name, content, place
):
    # given
    api_client.force_authenticate(admin_user)
    # when
    response = api_import(api_client, content, name=name)
    # then
    assert response.status_code == 400, response.content[:500]
    body = response.json()
    assert body["code"] == "import_rejected"
    assert [(p["line"], p["column"], p["field"]) for p in body["extra"]["problems"]] == [place]
    assert not ImportJob.objects.exists()
    assert not Trace.objects.exists()
    assert stored_uploads(upload_dir) == []


def test_a_superscript_sample_index_on_the_page_is_a_400_with_line_and_column(
    client, admin_user, audit, upload_dir
):
    client.force_login(admin_user)
    response = client.post(
        reverse("annotations:import", args=["bad"]),
        {"file": upload("t.csv", CSV_HEAD + "q1,Q,c,t1,Text.,\u00b2\n")},
    )
    assert response.status_code == 400
    assert "line 2, column 6 (sample_index): must be a whole number" in response.content.decode()
    assert not ImportJob.objects.exists()


def test_more_given_steps_than_the_limit_is_a_400_in_the_request_not_a_failed_job(
    api_client, admin_user, audit, upload_dir, settings
):
    # given 501 given steps, over STEPAUDIT_MAX_STEPS_PER_TRACE (500, the docs promise a 400)
    api_client.force_authenticate(admin_user)
    steps = [f"Step {i}." for i in range(settings.STEPAUDIT_MAX_STEPS_PER_TRACE + 1)]
    content = line(0, steps=["One."]) + "\n" + line(1, trace=" ".join(steps), steps=steps)
    # when
    response = api_import(api_client, content)
    # then
    assert response.status_code == 400, response.content[:500]
    (problem,) = response.json()["extra"]["problems"]
    assert (problem["line"], problem["field"]) == (2, "steps")
    assert problem["message"] == "segmenter 'given' yields 501 steps; the limit is 500"
    assert not ImportJob.objects.exists()


# --- the form itself: odd parts are a 400 with the field, never a 500 ------------------------
@pytest.mark.parametrize(
    ("data", "field"),
    [
        pytest.param({"file": "not a file"}, "file", id="file-as-text"),
        pytest.param({"segmenter": upload("s.txt", "given")}, "segmenter", id="segmenter-as-file"),
        pytest.param({"skip_existing": upload("s.txt", "1")}, "skip_existing", id="flag-as-file"),
        pytest.param({"segmenter": f"given{NUL}"}, "segmenter", id="segmenter-nul"),
    ],
)
def test_odd_form_parts_are_a_400_naming_the_field(api_client, admin_user, audit, data, field):
    api_client.force_authenticate(admin_user)
    data = {"file": upload("t.jsonl", line(0)), **data}
    response = api_client.post(
        reverse("annotations-api:api-import-create", args=["bad"]), data, format="multipart"
    )
    assert response.status_code == 400, response.content[:500]
    assert field in response.json()["extra"]


# --- 7. the command's --create creates nothing when the file is rejected ----------------------
def test_create_makes_no_audit_when_the_file_is_rejected(tmp_path, capsys):
    # given
    bad = tmp_path / "bad.jsonl"
    bad.write_text(line(0) + "\n" + line(1, sample_index=2**31) + "\n")
    # when
    with pytest.raises(CommandError, match="Nothing was imported"):
        call_command("import_traces", str(bad), "--audit", "fresh", "--create", "--no-progress")
    # then
    assert "line 2 (sample_index): must be a whole number" in capsys.readouterr().err
    assert not Audit.objects.filter(slug="fresh").exists()


def test_create_makes_no_audit_when_the_write_fails(tmp_path, monkeypatch):
    # given a file that passes validation but whose write fails after rows went in
    from annotations.management.commands import import_traces
    from annotations.services.import_formats import ImportProblem

    real_run = import_traces.import_run

    def run_then_fail(**kwargs):
        real_run(**kwargs)
        raise ImportRejected([ImportProblem(1, "failed while writing")])

    monkeypatch.setattr(import_traces, "import_run", run_then_fail)
    good = tmp_path / "good.jsonl"
    good.write_text(line(0) + "\n")
    # when
    with pytest.raises(CommandError, match="Nothing was imported"):
        call_command("import_traces", str(good), "--audit", "fresh", "--create", "--no-progress")
    # then the audit went with the rows
    assert not Audit.objects.filter(slug="fresh").exists()
    assert not Trace.objects.exists()


def test_create_with_a_good_file_makes_the_audit_and_imports(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text(line(0) + "\n" + line(1) + "\n")
    call_command("import_traces", str(good), "--audit", "fresh", "--create", "--no-progress")
    assert Audit.objects.get(slug="fresh").traces.count() == 2


# --- PostgreSQL: the worker would have failed on what pass 1 now refuses -----------------------
def _worker_row_fails(audit: Audit, *, sample_index=0, text="T.", metadata=None, step="S."):
    """Write one trace and its step as pass 2 does (COPY); True if PostgreSQL refuses it."""
    from annotations.services.imports import _RowWriter

    writer = _RowWriter()
    question = Question.objects.create(audit=audit, external_id="qx", stem="Q?")
    condition = Condition.objects.create(audit=audit, name="cx", blind_code="Arm X")
    try:
        with transaction.atomic():
            (pk,) = writer.trace_ids(1)
            row = (pk, audit.pk, question.pk, condition.pk, "tx", sample_index, text, "", None,
                   None, "", metadata or {}, None, "")  # fmt: skip
            writer.insert_traces([row])
            with writer.step_sink() as put:
                put((audit.pk, pk, "given", 0, step, step, "raw", None, None, "p" * 16, None, ""))
    except (DataError, psycopg.DataError):  # COPY runs on the raw psycopg cursor
        return True
    return False


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("worker_row", "record", "field"),
    [
        pytest.param({"sample_index": 2**31}, {"sample_index": 2**31}, "sample_index", id="2^31"),
        pytest.param({"text": f"A{NUL}B"}, {"trace": f"A{NUL}B"}, "trace", id="nul-trace"),
        pytest.param(
            {"metadata": {"k": NUL}}, {"metadata": {"k": NUL}}, "metadata", id="nul-metadata"
        ),
        pytest.param(
            {"step": f"S{NUL}"}, {"steps": [f"S{NUL}"], "trace": "S."}, "steps", id="nul-step"
        ),
    ],
)
def test_on_postgres_what_the_worker_could_not_write_is_refused_in_the_request(
    api_client, admin_user, audit, upload_dir, worker_row, record, field
):
    # given: the database refuses the row the worker would write for this value
    assert _worker_row_fails(audit, **worker_row)
    # and a control: the same row with a clean value goes in
    assert not _worker_row_fails(audit_create(slug="control", name="control"))
    # when the value comes in a file through the API
    api_client.force_authenticate(admin_user)
    response = api_import(api_client, line(0) + "\n" + line(1, **record))
    # then it is a 400 naming line and field, and no job was queued to fail later
    assert response.status_code == 400, response.content[:500]
    problems = response.json()["extra"]["problems"]
    assert [(p["line"], p["field"]) for p in problems] == [(2, field)]
    assert not ImportJob.objects.exists()
    assert not Trace.objects.filter(audit=audit).exists()


@pytest.mark.postgres
def test_on_postgres_the_largest_sample_index_imports_through_the_worker(
    api_client, admin_user, audit, upload_dir, celery_eager, django_capture_on_commit_callbacks
):
    # given the largest value PostgreSQL's integer column holds
    api_client.force_authenticate(admin_user)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = api_import(api_client, line(0, sample_index=2**31 - 1))
    # then it went all the way through the COPY
    assert response.status_code == 202
    assert ImportJob.objects.get().status == ImportJob.Status.DONE
    assert Trace.objects.get(audit=audit).sample_index == 2**31 - 1
    assert Step.objects.filter(audit=audit).count() == 2
