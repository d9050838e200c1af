import contextlib
import io
import json
import re
import zipfile
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import reverse

from auditapp.exceptions import ApplicationError, ConflictError, ForbiddenError
from reports.models import UnblindingEvent
from reports.services import audit_unblind

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples" / "traces.jsonl"


def _bodies(client, audit) -> dict[str, str]:
    """Every report surface a researcher reaches, as text."""
    slug = audit.slug
    q = "?resamples=50"
    out = {
        "page": client.get(reverse("reports:audit", args=[slug]) + q),
        "html": client.get(reverse("reports:audit-html", args=[slug]) + q),
        "json": client.get(reverse("reports-api:report", args=[slug]) + q),
    }
    for name in ("labels", "answers", "error_rates", "orderings", "answer_metrics"):
        out[f"{name}.csv"] = client.get(reverse("reports-api:table", args=[slug, name, "csv"]) + q)
    for key, response in out.items():
        assert response.status_code == 200, (key, response.status_code)
    return {k: r.content.decode("utf-8") for k, r in out.items()}


def _command_bodies(audit, tmp_path) -> dict[str, str]:
    bodies = {}
    for fmt in ("json", "csv", "html"):
        path = tmp_path / f"report.{fmt}"
        call_command("agreement_report", audit=audit.slug, format=fmt, out=str(path), resamples=50)
        bodies[fmt] = path.read_text(encoding="utf-8")
    archive = tmp_path / "tables.zip"
    call_command("agreement_report", audit=audit.slug, format="csv", out=str(archive), resamples=50)
    with zipfile.ZipFile(archive) as z:
        bodies["zip"] = "\n".join(z.read(n).decode() for n in z.namelist())
    return bodies


def test_condition_names_absent_before_and_present_after_unblinding(
    client, demo_audit, researcher, admin_user, condition_names, tmp_path
):
    # given a researcher signed in, the audit blinded
    client.force_login(researcher)
    codes = list(demo_audit.conditions.values_list("blind_code", flat=True))
    # when every surface is read
    bodies = {**_bodies(client, demo_audit), **_command_bodies(demo_audit, tmp_path / "a")}
    # then no condition name anywhere, and blind codes are what they show
    for key, body in bodies.items():
        for name in condition_names:
            assert name not in body, f"{name!r} leaked into {key}"
        assert codes[0] in body, key
    # when an admin unblinds
    audit_unblind(audit=demo_audit, user=admin_user, confirm_slug=demo_audit.slug)
    demo_audit.refresh_from_db()
    bodies = {**_bodies(client, demo_audit), **_command_bodies(demo_audit, tmp_path / "b")}
    # then names appear (the cached blinded report is not served)
    for key, body in bodies.items():
        assert any(name in body for name in condition_names), key
    report = json.loads(bodies["json"])
    assert report["blinding"]["blinded"] is False
    assert report["blinding"]["unblinded_by"] == admin_user.username


def test_unblind_needs_admin(demo_audit, researcher, clinician):
    # given non-admins / when / then
    for user in (researcher, clinician):
        with pytest.raises(ForbiddenError):
            audit_unblind(audit=demo_audit, user=user, confirm_slug=demo_audit.slug)
    demo_audit.refresh_from_db()
    assert demo_audit.unblinded_at is None


@pytest.mark.parametrize("typed", ["", "demo", "DEMO-TEST", "demo-test "[:-2]], ids=str)
def test_unblind_needs_the_slug_typed(demo_audit, admin_user, typed):
    # given a wrong confirmation / when / then
    with pytest.raises(ApplicationError) as info:
        audit_unblind(audit=demo_audit, user=admin_user, confirm_slug=typed)
    assert info.value.code == "confirmation_required"
    demo_audit.refresh_from_db()
    assert demo_audit.unblinded_at is None
    assert not UnblindingEvent.objects.exists()


def test_unblind_is_logged_and_happens_once(demo_audit, admin_user):
    # given / when
    event = audit_unblind(audit=demo_audit, user=admin_user, confirm_slug="demo-test")
    # then logged with who and when, on the audit too
    demo_audit.refresh_from_db()
    assert event.user == admin_user
    assert demo_audit.unblinded_at == event.at
    assert demo_audit.unblinded_by == admin_user
    # when again / then a conflict, nothing changes
    with pytest.raises(ConflictError):
        audit_unblind(audit=demo_audit, user=admin_user, confirm_slug="demo-test")
    assert UnblindingEvent.objects.count() == 1


def test_unblind_api_admin_only_and_second_call_409(
    api_client, demo_audit, admin_user, researcher, clinician
):
    url = reverse("reports-api:unblind", args=[demo_audit.slug])
    # given a researcher and a clinician / when / then 403
    for user in (researcher, clinician):
        api_client.force_authenticate(user)
        assert api_client.post(url, {"confirm": "demo-test"}, format="json").status_code == 403
    # given an admin without confirmation / then 400
    api_client.force_authenticate(admin_user)
    response = api_client.post(url, {"confirm": "nope"}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "confirmation_required"
    # when confirmed / then 200, and a second time 409
    assert api_client.post(url, {"confirm": "demo-test"}, format="json").status_code == 200
    response = api_client.post(url, {"confirm": "demo-test"}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "already_unblinded"


def test_unblind_page_confirms_then_redirects(client, demo_audit, admin_user, researcher):
    url = reverse("reports:audit-unblind", args=[demo_audit.slug])
    # given a researcher / then 403 on the page
    client.force_login(researcher)
    assert client.get(url).status_code == 403
    # given an admin / when the slug is wrong / then the form says so
    client.force_login(admin_user)
    assert client.get(url).status_code == 200
    response = client.post(url, {"confirm": "wrong"})
    assert response.status_code == 400
    assert "type the audit" in response.content.decode().lower()
    # when right / then redirected to the report, unblinded
    response = client.post(url, {"confirm": demo_audit.slug})
    assert response.status_code == 302
    demo_audit.refresh_from_db()
    assert demo_audit.unblinded_at is not None
    # and a second post is a 409
    assert client.post(url, {"confirm": demo_audit.slug}).status_code == 409


def test_standalone_html_has_no_script_and_embeds_figures(client, demo_audit, researcher):
    # given / when
    client.force_login(researcher)
    body = client.get(
        reverse("reports:audit-html", args=[demo_audit.slug]) + "?resamples=50"
    ).content.decode()
    # then one self-contained file: figures as data URIs, methods on its face
    assert "<script" not in body
    assert 'src="data:image/svg+xml;base64,' in body
    assert "Methods" in body and "cluster bootstrap" in body.lower()
    assert "Wilson" in body and "ECE" in body


def test_page_has_no_inline_script_and_ships_data_by_json_script(client, demo_audit, researcher):
    # given / when
    client.force_login(researcher)
    body = client.get(reverse("reports:audit", args=[demo_audit.slug]) + "?resamples=50")
    text = body.content.decode()
    # then
    assert body.status_code == 200
    assert '<script id="report-data" type="application/json">' in text
    assert text.count("<script") == 1
    assert "<svg" in text  # figures inline, server-side
    assert "Findings" in text and "Controls" in text
    assert "Sample-size planner" in text


def test_page_planner_answers(client, demo_audit, researcher):
    # given / when
    client.force_login(researcher)
    response = client.get(
        reverse("reports:audit", args=[demo_audit.slug]),
        {
            "resamples": 20,
            "p1": 0.3,
            "p2": 0.5,
            "alpha": 0.05,
            "power": 0.8,
            "steps_per_trace": 1,
            "icc": 0,
        },
    )
    # then 93 per condition, as statsmodels' arcsine power analysis says
    assert response.status_code == 200
    assert "<strong>93</strong> labelled steps per condition" in response.content.decode()


def test_zip_export_holds_every_table(tmp_path, demo_audit):
    # given / when
    out = tmp_path / "t.zip"
    call_command(
        "agreement_report", audit=demo_audit.slug, format="csv", out=str(out), resamples=20
    )
    # then
    with zipfile.ZipFile(out) as z:
        names = set(z.namelist())
        error_rates = z.read("error_rates.csv").decode()
    assert {"error_rates.csv", "orderings.csv", "answer_metrics.csv", "report.json"} <= names
    assert io.StringIO(error_rates).readline().startswith("evaluator,evaluator_kind,condition")


# --- trace and question ids under pseudonyms (an attacker's walk) ---------------------------
def _leaky_file(tmp_path: Path) -> Path:
    """The demo traces with ids that name their arm, as real files do: ``teacher-q03``."""
    lines = []
    for line in EXAMPLES.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        arm, question = record["condition"], record["question_id"]
        record["question_id"] = f"{arm}-{question}"
        record["trace_id"] = f"{arm}-{question}-{record['trace_id']}"
        lines.append(json.dumps(record))
    path = tmp_path / "leaky.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def leaky_audit(db, tmp_path, clinician, other_clinician):
    """An audit whose imported ids name the arm, with everything a report reads: expert labels,
    a Likert rating, a reference run and an imported judge run."""
    from annotations.models import AssignmentItem, Step, TraceRating
    from annotations.services.audits import audit_create
    from annotations.services.batches import batch_assign, batch_build
    from annotations.services.imports import import_file
    from annotations.services.labels import label_save
    from judges.services import reference_run_create, verdicts_import

    audit = audit_create(slug="leaky", name="Leaky ids")
    import_file(audit=audit, path=_leaky_file(tmp_path), segmenter_names=["given"])
    batch = batch_build(audit=audit, name="b", size=40, segmentation="given", overlap=2)
    for n, assignment in enumerate(
        batch_assign(batch=batch, annotators=[clinician, other_clinician])
    ):
        for item in assignment.items.order_by("position"):
            label_save(
                annotator=assignment.annotator,
                assignment_public_id=assignment.public_id,
                position=item.position,
                verdict="error" if (item.position + n) % 3 == 0 else "correct",
                error_category="other",
            )
    item = AssignmentItem.objects.filter(assignment__batch=batch).select_related(
        "batch_item__step"
    )[0]
    TraceRating.objects.create(
        assignment_item=item,
        assignment=item.assignment,
        trace_id=item.batch_item.step.trace_id,
        answers={"clarity": 4},
    )
    # Issue 13: whole traces too, in both trace modes (the long table's ``mode`` column).
    from annotations.services.first_error import first_error_mark

    for mode in ("trace", "first_error"):
        whole = batch_build(audit=audit, name=mode, size=3, segmentation="given", mode=mode)
        (assignment,) = batch_assign(batch=whole, annotators=[clinician])
        if mode == "first_error":
            first_error_mark(
                annotator=clinician,
                assignment_public_id=assignment.public_id,
                trace_number=1,
                first_error=2,
            )
        else:
            label_save(
                annotator=clinician,
                assignment_public_id=assignment.public_id,
                position=1,
                verdict="correct",
            )
    reference_run_create(audit=audit, segmentation="given")
    steps = Step.objects.filter(audit=audit, segmentation="given").values_list(
        "public_id", flat=True
    )
    verdicts_import(
        audit=audit,
        judge_name="llm-judge",
        lines=[json.dumps({"step_id": s, "verdict": "correct"}) for s in steps],
        segmentation="given",
    )
    return audit


def _external_ids(audit) -> set[str]:
    from annotations.models import Question, Trace

    return set(Trace.objects.filter(audit=audit).values_list("external_id", flat=True)) | set(
        Question.objects.filter(audit=audit).values_list("external_id", flat=True)
    )


def _url_patterns(patterns=None, prefix: str = ""):
    from django.urls import URLPattern, URLResolver, get_resolver

    for p in patterns if patterns is not None else get_resolver().url_patterns:
        if isinstance(p, URLResolver):
            yield from _url_patterns(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern)


def _as_text(response) -> str:
    """A body as text; Parquet read back into CSV (its strings may be compressed)."""
    import pandas as pd

    data = b"".join(response.streaming_content) if response.streaming else response.content
    if data[:4] == b"PAR1":
        return pd.read_parquet(io.BytesIO(data)).to_csv(index=False)
    return data.decode("utf-8", errors="replace") + json.dumps(dict(response.headers))


def _researcher_surfaces(client, audit) -> dict[str, str]:
    """GET every URL pattern of the app, its parameters filled from the audit, as the signed-in
    user; every answer that is not a redirect or a refusal, as text."""
    from annotations.models import Assignment, Batch
    from judges.models import JudgeRun
    from reports.apis import LONG_TABLES
    from reports.exports import REPORT_TABLES

    values = {
        "slug": [audit.slug],
        "batch_id": [
            str(b) for b in Batch.objects.filter(audit=audit).values_list("pk", flat=True)
        ],
        "run_id": [
            str(r) for r in JudgeRun.objects.filter(audit=audit).values_list("pk", flat=True)
        ],
        "public_id": list(
            Assignment.objects.filter(batch__audit=audit).values_list("public_id", flat=True)
        ),
        "position": ["1"],
        "name": [*LONG_TABLES, *REPORT_TABLES],
        "fmt": ["csv", "parquet"],
    }
    urls: list[str] = []
    for pattern in _url_patterns():
        if pattern.startswith(("admin/", "^", "accounts/")) or "<slug:action>" in pattern:
            continue  # admin: staff only (checked below); actions and accounts: POST / no data
        filled = [pattern]
        for key, options in values.items():
            marker = re.compile(rf"<(?:\w+:)?{key}>")
            filled = (
                [marker.sub(o, f) for f in filled for o in options]
                if any(marker.search(f) for f in filled)
                else filled
            )
        urls.extend("/" + f for f in filled if "<" not in f)
    urls += [f"/api/judges/runs/?audit={audit.slug}", "/admin/annotations/trace/"]
    bodies = {}
    for url in urls:
        sep = "&" if "?" in url else "?"
        response = client.get(f"{url}{sep}resamples=30")
        if response.status_code in (301, 302, 403, 404, 405):
            continue
        bodies[url] = _as_text(response)
    return bodies


def _command_outputs(audit, tmp_path) -> dict[str, str]:
    bodies = _command_bodies(audit, tmp_path)
    folder = tmp_path / "folder"
    call_command("agreement_report", audit=audit.slug, format="csv", out=f"{folder}/", resamples=30)
    for path in folder.iterdir():
        bodies[f"folder/{path.name}"] = path.read_text(encoding="utf-8")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        call_command("agreement_report", audit=audit.slug, format="csv", resamples=30)
    bodies["stdout"] = stdout.getvalue()
    return bodies


def _table(client, audit, name: str, fmt: str = "csv"):
    import pandas as pd

    response = client.get(reverse("reports-api:table", args=[audit.slug, name, fmt]))
    assert response.status_code == 200, (name, response.status_code)
    if fmt == "parquet":
        return pd.read_parquet(io.BytesIO(response.content))
    return pd.read_csv(io.BytesIO(response.content), dtype=str)


def test_no_imported_id_reaches_a_researcher_while_blinded(
    client, leaky_audit, researcher, condition_names, tmp_path
):
    # given a researcher, the audit blinded, ids that name the arm
    client.force_login(researcher)
    secrets = _external_ids(leaky_audit)
    assert any(s.startswith("teacher-q") for s in secrets)
    # when every page, API, table (CSV and Parquet) and command output is read
    bodies = {
        **_researcher_surfaces(client, leaky_audit),
        **_command_outputs(leaky_audit, tmp_path),
    }
    # then the surfaces that show data were all read …
    reached = set(bodies)
    for must in (
        f"/reports/audits/{leaky_audit.slug}/",
        f"/api/reports/audits/{leaky_audit.slug}/report/",
        f"/api/reports/audits/{leaky_audit.slug}/tables/labels.csv",
        f"/api/reports/audits/{leaky_audit.slug}/tables/ratings.parquet",
        f"/judges/audits/{leaky_audit.slug}/runs/",
        "folder/labels.csv",
        "zip",
    ):
        assert must in reached, must
    # … and not one carries an imported id or an arm's name
    for key, body in bodies.items():
        for secret in (*secrets, *condition_names):
            assert secret not in body, f"{secret!r} leaked into {key}"
    # and the long tables name traces and questions by pseudonym
    labels = _table(client, leaky_audit, "labels")
    assert set(labels["mode"].dropna()) == {"steps", "trace", "first_error"}
    assert labels["trace_id"].str.fullmatch(r"T-[A-Z2-7]{16}").all()
    assert labels["question_id"].str.fullmatch(r"Q-[A-Z2-7]{16}").all()


def test_pseudonyms_are_stable_and_join_across_tables_and_formats(client, leaky_audit, researcher):
    # given
    client.force_login(researcher)
    # when the same tables are read twice, as CSV and as Parquet
    first, again = _table(client, leaky_audit, "labels"), _table(client, leaky_audit, "labels")
    parquet = _table(client, leaky_audit, "labels", "parquet")
    answers = _table(client, leaky_audit, "answers")
    ratings = _table(client, leaky_audit, "ratings")
    # then the same step has the same trace pseudonym everywhere
    by_step = first.set_index(["step_id", "evaluator"])["trace_id"]
    assert by_step.equals(again.set_index(["step_id", "evaluator"])["trace_id"])
    assert by_step.to_dict() == parquet.set_index(["step_id", "evaluator"])["trace_id"].to_dict()
    # and labels, answers and ratings join on it: one trace, one question, one pseudonym each
    assert set(first["trace_id"]) <= set(answers["trace_id"])
    assert set(ratings["trace_id"]) <= set(answers["trace_id"])
    pairs = first[["trace_id", "question_id"]].drop_duplicates()
    assert pairs.merge(answers, on=["trace_id", "question_id"]).shape[0] == len(pairs)
    assert answers["trace_id"].is_unique and len(answers) == 60
    assert answers["question_id"].nunique() == len(
        set(leaky_audit.questions.values_list("external_id", flat=True))
    )


def test_pseudonyms_need_the_audit_secret():
    # given the same ids under two seeds / when / then unrelated, kinds independent too
    from annotations.selectors.pseudonyms import id_pseudonyms

    ids = ["teacher-q03", "student-after-q03"]
    one = id_pseudonyms(seed="a" * 64, kind="trace", external_ids=ids)
    assert one == id_pseudonyms(seed="a" * 64, kind="trace", external_ids=ids)
    assert set(one).isdisjoint(id_pseudonyms(seed="b" * 64, kind="trace", external_ids=ids))
    questions = id_pseudonyms(seed="a" * 64, kind="question", external_ids=ids)
    assert {p[2:] for p in one}.isdisjoint(p[2:] for p in questions)
    assert all(p.startswith("Q-") for p in questions) and len(set(one)) == 2


def test_the_mapping_is_refused_while_blinded_even_to_admins(
    api_client, leaky_audit, researcher, admin_user
):
    url = reverse("reports-api:table", args=[leaky_audit.slug, "pseudonyms", "csv"])
    for user in (researcher, admin_user):
        # given / when
        api_client.force_authenticate(user)
        response = api_client.get(url)
        # then
        assert response.status_code == 409
        assert response.json()["code"] == "still_blinded"
        assert "teacher" not in response.content.decode()


def test_after_unblinding_real_ids_appear_and_the_mapping_round_trips(
    client, leaky_audit, researcher, admin_user, tmp_path
):
    # given the blinded tables a researcher saved
    client.force_login(researcher)
    blinded = _table(client, leaky_audit, "labels")
    blinded_answers = _table(client, leaky_audit, "answers")
    # when an admin unblinds
    audit_unblind(audit=leaky_audit, user=admin_user, confirm_slug=leaky_audit.slug)
    leaky_audit.refresh_from_db()
    # then the tables carry the imported ids
    labels = _table(client, leaky_audit, "labels")
    assert set(labels["trace_id"]) <= _external_ids(leaky_audit)
    assert any(t.startswith("teacher-q") for t in labels["trace_id"])
    # and the mapping (CSV and Parquet) turns the saved blinded tables into the real ones
    for fmt in ("csv", "parquet"):
        mapping = _table(client, leaky_audit, "pseudonyms", fmt)
        assert set(mapping.columns) == {"kind", "pseudonym", "external_id"}
        assert mapping["pseudonym"].is_unique
        assert len(mapping) == leaky_audit.traces.count() + leaky_audit.questions.count()
        to_id = dict(zip(mapping["pseudonym"], mapping["external_id"], strict=True))
        restored = blinded.assign(
            trace_id=blinded["trace_id"].map(to_id), question_id=blinded["question_id"].map(to_id)
        )
        key = ["step_id", "evaluator"]
        assert (
            restored.set_index(key)[["trace_id", "question_id"]]
            .sort_index()
            .equals(labels.set_index(key)[["trace_id", "question_id"]].sort_index())
        )
        answers = _table(client, leaky_audit, "answers")
        assert sorted(blinded_answers["trace_id"].map(to_id)) == sorted(answers["trace_id"])
    # and the page links it, and the command writes it along with the long tables
    page = client.get(reverse("reports:audit", args=[leaky_audit.slug])).content.decode()
    assert "pseudonyms.csv" in page
    call_command(
        "agreement_report", audit=leaky_audit.slug, format="csv", out=f"{tmp_path}/t/", resamples=20
    )
    assert (tmp_path / "t" / "pseudonyms.csv").read_text().count("teacher-q") > 0


def test_judge_long_table_names_traces_like_the_report(leaky_audit, admin_user):
    # given the judges' own long table (the selector the report falls back to)
    from judges.selectors import verdicts_long_table
    from reports.collect import labels_collect

    secrets = _external_ids(leaky_audit)
    # when read while blinded / then the report's pseudonyms, never an imported id
    rows = list(verdicts_long_table(leaky_audit))
    labels, _ = labels_collect(leaky_audit)
    shown = dict(zip(labels["step_id"], labels["trace_id"], strict=False))
    assert rows and all(r["trace_id"] == shown[r["step_id"]] for r in rows)
    assert not secrets & {v for r in rows for v in (r["trace_id"], r["question_id"])}
    # when unblinded / then the imported ids
    audit_unblind(audit=leaky_audit, user=admin_user, confirm_slug=leaky_audit.slug)
    leaky_audit.refresh_from_db()
    assert {r["trace_id"] for r in verdicts_long_table(leaky_audit)} <= secrets
