"""Formula injection, tried as an attacker: model output, imported ids, arm names, judge and
rater names, error categories and Likert items that a spreadsheet would run as formulas, in
every text column of every CSV the app writes; numbers stay numbers, Parquet keeps raw values,
and the exported CSVs still read back into the same report."""

import contextlib
import csv
import io
import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from django.core.management import call_command
from django.urls import reverse

from auditapp.agreement.formats import CSV_RISKY_STARTS, csv_text_restore
from reports.exports import csv_safe, frame_to_csv

PAYLOADS = ('=HYPERLINK("http://x","y")', "@SUM(A1)", "+cmd", "-2+3", "\t=1", "\r=1")
RISKY = CSV_RISKY_STARTS[:-1]  # OWASP's six; the apostrophe is our own escape of the escape


def _record(n: int, arm: str) -> dict:
    payload = PAYLOADS[n % len(PAYLOADS)]
    return {
        "question_id": f"{payload}q{n % 4}",
        "question": "Which option?",
        "options": {"A": "a", "B": "b"},
        "gold_answer": "=A1" if n % 2 else "B",
        "condition": arm,
        "trace_id": f"{payload}t{n}",
        "trace": "1. First step.\n2. Second step.\n3. The answer.",
        "final_answer": "@A" if n % 3 else "B",
        "confidence": 0.6 + 0.01 * n,
        "trace_type": "+long" if n % 2 else "-short",
        "steps": [
            {"text": "1. First step.", "reference_verdict": "error" if n % 3 == 0 else "correct"},
            {"text": "2. Second step.", "reference_verdict": "correct"},
            {"text": "3. The answer.", "reference_verdict": "error" if n % 4 == 0 else "correct"},
        ],
    }


ARMS = ('=HYPERLINK("http://x","arm")', "-arm-b")
EXPERT = "+clin"  # usernames allow + - @ .
JUDGE = '=HYPERLINK("http://x","judge")'
CATEGORY = "@SUM(A1)"
ITEM = "-clarity"


@pytest.fixture
def formula_audit(db, tmp_path, admin_user):
    from annotations.models import AssignmentItem, Step, TraceRating
    from annotations.roles import Role
    from annotations.services.audits import audit_create
    from annotations.services.batches import batch_assign, batch_build
    from annotations.services.imports import import_file
    from annotations.services.labels import label_save
    from annotations.services.users import user_create_or_update
    from judges.services import verdicts_import
    from reports.services import audit_unblind

    path = tmp_path / "formulas.jsonl"
    records = [_record(n, ARMS[n % 2]) for n in range(24)]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    audit = audit_create(slug="formulas", name="Formulas", error_categories=[CATEGORY, "other"])
    import_file(audit=audit, path=path, segmenter_names=["given"])
    expert = user_create_or_update(username=EXPERT, role=Role.CLINICIAN, password="pw-x1234567")
    batch = batch_build(audit=audit, name="b", size=30, segmentation="given")
    (assignment,) = batch_assign(batch=batch, annotators=[expert])
    for item in assignment.items.order_by("position"):
        label_save(
            annotator=expert,
            assignment_public_id=assignment.public_id,
            position=item.position,
            verdict="error" if item.position % 2 else "correct",
            error_category=CATEGORY,
        )
    item = AssignmentItem.objects.filter(assignment=assignment).select_related("batch_item")[0]
    TraceRating.objects.create(
        assignment_item=item,
        assignment=assignment,
        trace_id=item.batch_item.step.trace_id,
        answers={ITEM: 4},
    )
    steps = Step.objects.filter(audit=audit, segmentation="given").order_by("pk")
    verdicts_import(
        audit=audit,
        judge_name=JUDGE,
        lines=[
            json.dumps(
                {"step_id": s, "verdict": "error" if i % 2 else "correct"}
                | ({"error_category": CATEGORY} if i % 2 else {})
            )
            for i, s in enumerate(steps.values_list("public_id", flat=True))
        ],
        segmentation="given",
    )
    # Unblinded, so arm names and imported ids reach the exports as well.
    audit_unblind(audit=audit, user=admin_user, confirm_slug=audit.slug)
    audit.refresh_from_db()
    return audit


def _api_csvs(client, audit) -> dict[str, str]:
    from reports.apis import LONG_TABLES
    from reports.exports import REPORT_TABLES

    out = {}
    for name in (*LONG_TABLES, *REPORT_TABLES):
        url = reverse("reports-api:table", args=[audit.slug, name, "csv"]) + "?resamples=30"
        response = client.get(url)
        assert response.status_code == 200, (name, response.content[:300])
        out[f"api/{name}.csv"] = response.content.decode("utf-8")
    return out


def _command_csvs(audit, tmp_path: Path) -> dict[str, str]:
    out = {}
    folder = tmp_path / "folder"
    call_command("agreement_report", audit=audit.slug, format="csv", out=f"{folder}/", resamples=30)
    for path in folder.glob("*.csv"):
        out[f"folder/{path.name}"] = path.read_bytes().decode("utf-8")
    archive = tmp_path / "t.zip"
    call_command("agreement_report", audit=audit.slug, format="csv", out=str(archive), resamples=30)
    with zipfile.ZipFile(archive) as z:
        for name in z.namelist():
            if name.endswith(".csv"):
                out[f"zip/{name}"] = z.read(name).decode("utf-8")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        call_command("agreement_report", audit=audit.slug, format="csv", resamples=30)
    out["stdout"] = stdout.getvalue()
    return out


def _cells(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def test_no_csv_cell_opens_as_a_formula(client, formula_audit, researcher, tmp_path):
    # given a researcher and an audit full of formulas
    client.force_login(researcher)
    # when every CSV is written: the API's tables, the command's folder, zip and stdout
    files = {**_api_csvs(client, formula_audit), **_command_csvs(formula_audit, tmp_path)}
    # then no text cell (nor header) starts a formula; a cell starting with - + is a number
    checked = 0
    for key, text in files.items():
        rows = _cells(text)
        header = next(csv.reader(io.StringIO(text, newline="")), [])
        for name in header:
            assert not name.startswith(RISKY), (key, name)
        for row in rows:
            for column, cell in row.items():
                checked += 1
                if cell.startswith(RISKY):
                    assert _is_number(cell) and not cell.startswith(("=", "@", "\t", "\r")), (
                        key,
                        column,
                        cell,
                    )
    assert checked > 1000


@pytest.mark.parametrize(
    ("table", "columns"),
    [
        ("labels", ["trace_id", "question_id", "condition", "evaluator", "error_category"]),
        ("answers", ["trace_id", "question_id", "condition", "answer", "gold", "trace_type"]),
        ("ratings", ["trace_id", "trace_type", "rater", "item"]),
        ("pseudonyms", ["external_id"]),
        ("error_rates", ["condition", "evaluator"]),
        ("answer_metrics", ["condition"]),
    ],
    ids=lambda v: v if isinstance(v, str) else "+".join(v),
)
def test_every_text_column_is_neutralised_and_parquet_keeps_it_raw(
    client, formula_audit, researcher, table, columns
):
    # given
    client.force_login(researcher)
    url = reverse("reports-api:table", args=[formula_audit.slug, table, "{fmt}"])
    # when the table is read as CSV (raw cells) and as Parquet
    text = client.get(url.replace("%7Bfmt%7D", "csv")).content.decode("utf-8")
    cells = pd.DataFrame(_cells(text))
    raw = pd.read_parquet(io.BytesIO(client.get(url.replace("%7Bfmt%7D", "parquet")).content))
    # then every payload-bearing cell of these columns is the raw value behind an apostrophe
    for column in columns:
        payloads = raw[column].dropna().astype(str)
        payloads = payloads[payloads.str.startswith(RISKY)]
        assert not payloads.empty, f"no formula reached {table}.{column}: test data too tame"
        shown = cells.loc[payloads.index, column]
        assert (shown == "'" + payloads).all(), (column, shown.head(3).tolist())
    # and Parquet holds the raw values: the formulas as given, no apostrophe added
    for column in columns:
        assert not raw[column].dropna().astype(str).str.startswith("'").any(), column


def test_numeric_columns_stay_numbers(client, formula_audit, researcher):
    # given
    client.force_login(researcher)
    url = reverse("reports-api:table", args=[formula_audit.slug, "ordering_differences", "csv"])
    # when
    rows = _cells(client.get(url + "?resamples=30").content.decode("utf-8"))
    rates = _cells(
        client.get(
            reverse("reports-api:table", args=[formula_audit.slug, "error_rates", "csv"])
            + "?resamples=30"
        ).content.decode("utf-8")
    )
    # then differences of both signs are plain numbers, never apostrophed
    differences = [r["difference"] for r in rows]
    assert differences and all(_is_number(d) for d in differences)
    assert any(d.startswith("-") for d in differences)
    assert all(_is_number(r["error_rate"]) for r in rates)
    assert all(_is_number(r["n"]) and "'" not in r["n"] for r in rates)


def test_csv_safe_rules():
    # given every risky start, an apostrophe, plain text and numbers in mixed columns
    frame = pd.DataFrame(
        {
            "text": [*PAYLOADS, "'quoted", "plain", None],
            "number": [-1.5, -2.0, 3.0, 0.0, -0.25, 1e9, -7.0, 2.0, None],
            "mixed": [-2, "-2", "=x", None, 1.5, "ok", "@", "+", "\r"],
        }
    )
    # when
    safe = csv_safe(frame)
    text = frame_to_csv(frame)
    # then OWASP's starts are prefixed, numbers untouched, the original frame unchanged
    assert safe["text"].tolist()[:6] == ["'" + p for p in PAYLOADS]
    assert safe["text"].tolist()[6:8] == ["''quoted", "plain"]
    assert safe["number"].equals(frame["number"])
    assert safe["mixed"].tolist()[:3] == [-2, "'-2", "'=x"]
    assert frame["text"].iloc[0] == PAYLOADS[0]
    assert "\r\n-1.5," in text or text.splitlines()[1].split(",")[-2] == "-1.5"
    # and reading the CSV back restores every cell exactly (the CR cell is quoted)
    back = csv_text_restore(pd.read_csv(io.StringIO(text), dtype={"text": str}))
    assert back["text"].tolist()[:8] == frame["text"].tolist()[:8]
    assert back["number"].tolist()[:8] == frame["number"].tolist()[:8]


def test_exported_csvs_read_back_into_the_same_report(formula_audit, tmp_path):
    # given the long tables exported by the command (neutralised CSV)
    folder = tmp_path / "out"
    call_command(
        "agreement_report", audit=formula_audit.slug, format="csv", out=f"{folder}/",
        resamples=30, seed=3,
    )  # fmt: skip
    exported = _cells((folder / "labels.csv").read_bytes().decode("utf-8"))
    assert "'" + ARMS[0] in {row["condition"] for row in exported}
    # when recomputed from the files
    again = tmp_path / "again.json"
    call_command(
        "agreement_report", labels=folder / "labels.csv", answers=folder / "answers.csv",
        ratings=folder / "ratings.csv", format="json", resamples=30, seed=3, out=str(again),
    )  # fmt: skip
    # then the same numbers under the raw names (the apostrophes are undone on reading)
    first = json.loads((folder / "report.json").read_text())
    second = json.loads(again.read_text())

    def rates(report):
        return sorted(
            (r["evaluator"], r["condition"], r["n"], r["n_error"]) for r in report["error_rates"]
        )

    assert rates(second) == rates(first)
    assert {r["condition"] for r in second["error_rates"]} == set(ARMS)
    assert {r["evaluator"] for r in second["error_rates"]} >= {EXPERT, JUDGE}
    assert second["answer_metrics"] == first["answer_metrics"]
