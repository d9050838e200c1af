"""Every bad report request is a 4xx with a reason (or a one-line command error): settings out
of range, unknown tables and formats, an audit with nothing yet, a rating audit without
ratings."""

import json

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from annotations.models import Audit
from annotations.services.audits import audit_create

LIKERT = [{"key": "clarity", "label": "How clear?", "min": 1, "max": 5}]


@pytest.fixture
def empty_audit(db):
    return audit_create(slug="nothing-yet", name="Nothing yet")


@pytest.fixture
def rating_audit(db):
    """A trace-rating audit with imported traces and nobody's ratings."""
    from annotations.services.imports import import_file
    from tests.conftest import EXAMPLES

    audit = audit_create(
        slug="unrated", name="Unrated", kind=Audit.Kind.TRACE_RATINGS, likert_items=LIKERT
    )
    import_file(audit=audit, path=EXAMPLES / "traces.jsonl", segmenter_names=["given"])
    return audit


@pytest.mark.parametrize(
    "params",
    [
        {"resamples": 100_001},
        {"resamples": 1.5},
        {"seed": "x"},
        {"ece_bins": 0},
        {"ece_bins": 1001},
        {"confidence_level": 0.3},
        {"confidence_level": 1},
        {"confidence_level": "high"},
    ],
    ids=lambda p: "-".join(f"{k}={v}" for k, v in p.items()),
)
def test_out_of_range_settings_are_400_on_the_report_and_its_tables(
    api_client, demo_audit, researcher, params
):
    api_client.force_authenticate(researcher)
    for url in (
        reverse("reports-api:report", args=[demo_audit.slug]),
        reverse("reports-api:table", args=[demo_audit.slug, "error_rates", "csv"]),
    ):
        response = api_client.get(url, params)
        assert response.status_code == 400, (url, params, response.content[:200])
        body = response.json()
        assert body["code"] == "invalid" and body["message"], body
        assert next(iter(params)) in json.dumps(body)  # names the setting


def test_unknown_tables_and_formats_are_404_that_list_what_exists(
    api_client, demo_audit, researcher
):
    api_client.force_authenticate(researcher)
    unknown = api_client.get(reverse("reports-api:table", args=[demo_audit.slug, "nope", "csv"]))
    bad_format = api_client.get(
        reverse("reports-api:table", args=[demo_audit.slug, "labels", "xlsx"])
    )
    no_audit = api_client.get(reverse("reports-api:report", args=["no-such-audit"]))
    assert unknown.status_code == bad_format.status_code == no_audit.status_code == 404
    assert "error_rates" in unknown.json()["extra"]["tables"]
    assert "csv or parquet" in bad_format.json()["message"]


def test_the_page_refuses_bad_settings_with_400_and_says_why(client, demo_audit, researcher):
    client.force_login(researcher)
    url = reverse("reports:audit", args=[demo_audit.slug])
    response = client.get(url, {"resamples": 0, "seed": 1})
    assert response.status_code == 400
    assert "greater than or equal to 1" in response.content.decode()
    download = client.get(reverse("reports:audit-html", args=[demo_audit.slug]), {"resamples": 0})
    assert download.status_code == 400
    assert "resamples" in download.content.decode()


@pytest.mark.parametrize("which", ["empty_audit", "rating_audit"])
def test_an_audit_with_nothing_to_report_yet_answers_everywhere(
    request, api_client, client, researcher, which, tmp_path, capsys
):
    # given a new audit, or a rating audit nobody rated
    audit = request.getfixturevalue(which)
    api_client.force_authenticate(researcher)
    client.force_login(researcher)
    settings = {"resamples": 20}
    # when every view, table and the command are asked for its report
    report = api_client.get(reverse("reports-api:report", args=[audit.slug]), settings)
    assert report.status_code == 200, report.content[:300]
    assert report.json()["likert"] is None
    page = client.get(reverse("reports:audit", args=[audit.slug]), settings)
    assert page.status_code == 200
    assert client.get(reverse("reports:audit-html", args=[audit.slug]), settings).status_code == 200
    from reports.exports import report_tables

    names = [*report_tables(report.json()), "labels", "answers", "ratings", "expert_labels"]
    names += ["revisions", "steps"]
    for name in names:
        for fmt in ("csv", "parquet"):
            table = api_client.get(
                reverse("reports-api:table", args=[audit.slug, name, fmt]), settings
            )
            assert table.status_code == 200, (name, fmt, table.content[:300])
    # then the command gives the same empty report, in every format
    call_command("agreement_report", audit=audit.slug, resamples=20)
    assert json.loads(capsys.readouterr().out)["audit"]["slug"] == audit.slug
    call_command("agreement_report", "--audit", audit.slug, "--resamples", "20", "--format", "csv",
                 "--out", str(tmp_path / "all") + "/")  # fmt: skip
    assert (tmp_path / "all" / "likert.csv").exists()
    call_command("agreement_report", "--audit", audit.slug, "--resamples", "20", "--format", "html",
                 "--out", str(tmp_path / "r.html"))  # fmt: skip
    assert (tmp_path / "r.html").read_text().startswith("<!doctype html>")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seed", "-1"], "seed must be a non-negative integer"),
        (["--seed", "x"], "invalid int value"),
        (["--ece-bins", "0"], "positive integer"),
        (["--abstain-rule", "maybe"], "invalid choice"),
        (["--format", "xlsx"], "invalid choice"),
        (["--answers", "a.csv"], "go with --labels"),
        (["--format", "csv", "--out", "/proc/no-such-dir/"], "cannot write"),
        (["--out", "/proc/no-such-dir/r.json"], "cannot write"),
    ],
    ids=["seed", "seed-text", "bins", "abstain", "format", "answers", "folder", "file"],
)
def test_bad_command_options_are_one_line_errors(demo_audit, args, message):
    with pytest.raises(CommandError, match=message) as error:
        call_command("agreement_report", "--audit", demo_audit.slug, "--resamples", "20", *args)
    assert "\n" not in str(error.value)
