import io
import json
import zipfile

import pytest
from django.core.management import call_command
from django.urls import reverse

from auditapp.exceptions import ApplicationError, ConflictError, ForbiddenError
from auditapp.reports.models import UnblindingEvent
from auditapp.reports.services import audit_unblind


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
    assert "Does the expert reproduce the judge?" in text
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
