"""The "New audit" / "Edit audit" pages: admins only, lists as rows, the same validation as
files and the API (annotations/audit_spec.py), a guidelines preview, field errors."""

import pytest
from django.test import Client, override_settings
from django.urls import reverse

from annotations.models import Audit
from annotations.services.audits import audit_create

pytestmark = pytest.mark.django_db


def _client(user=None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def _likert_post(**overrides) -> dict:
    data = {
        "slug": "page-study",
        "kind": "trace_ratings",
        "name": "Page study: four trace types",
        "annotator_title": "Reading study",
        "guidelines": "Read **each** trace.",
        "context_mode": "preceding",
        "context_window": "2",
        "style_normalisation": "on",
        "normaliser_version": "norm-v2",
        "hidden_repeat_share": "0",
        "repeat_min_gap": "10",
        "leak_threshold": "0.6",
        "seed": "",
        "likert_items-0-key": "clarity",
        "likert_items-0-label": "How clear is it?",
        "likert_items-0-min": "1",
        "likert_items-0-max": "7",
        "likert_items-0-min_label": "unclear",
        "likert_items-0-max_label": "clear",
        # a blank row (the one the page offers) and a row numbered out of order
        "likert_items-1-key": "",
        "likert_items-5-key": "effort",
        "likert_items-5-label": "How much effort?",
        "error_categories-0": "",
        "probe_arms-0-label": "Source A",
        "probe_arms-0-condition": "fast",
        "probe_arms-3-label": "Source B",
        "probe_arms-3-condition": "slow",
        "action": "save",
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize("role", ["anonymous", "clinician", "researcher", "judge_editor"])
def test_only_admins_reach_the_audit_pages(request, role):
    # given a visitor of each role that is not an admin (a judge editor: a researcher allowed
    # to edit judges) and an existing audit
    audit_create(slug="guarded", name="Guarded")
    user = (
        None
        if role == "anonymous"
        else request.getfixturevalue("researcher" if role == "judge_editor" else role)
    )
    client = _client(user)
    with override_settings(STEPAUDIT_JUDGE_EDITORS="researchers"):
        for url in (
            reverse("annotations:audit-new"),
            reverse("annotations:audit-edit", args=["guarded"]),
        ):
            # when they open the page, or post to it
            got = client.get(url)
            posted = client.post(url, _likert_post(slug="sneaky"))
            # then they are sent to sign in as staff, and nothing changes
            for response in (got, posted):
                assert response.status_code in (302, 403), (url, response.status_code)
                if response.status_code == 302:
                    assert "/login/" in response["Location"]
    assert not Audit.objects.filter(slug="sneaky").exists()
    assert Audit.objects.get(slug="guarded").name == "Guarded"


def test_an_admin_creates_a_likert_audit_from_rows(admin_user):
    # given an admin on the new-audit page
    client = _client(admin_user)
    page = client.get(reverse("annotations:audit-new"))
    assert page.status_code == 200
    html = page.content.decode()
    # the lists are rows of inputs, not JSON boxes
    assert 'name="error_categories-0"' in html and 'name="likert_items-0-key"' in html
    assert "<script>" not in html and " style=" not in html  # the strict CSP allows neither
    # when they post two Likert items (one blank row, rows numbered with gaps) and two options
    response = client.post(reverse("annotations:audit-new"), _likert_post())
    # then the audit exists with exactly those, in order, and the page moves to its edit view
    assert response.status_code == 302
    assert response["Location"] == reverse("annotations:audit-edit", args=["page-study"])
    audit = Audit.objects.get(slug="page-study")
    assert audit.kind == "trace_ratings"
    assert [i["key"] for i in audit.likert_items] == ["clarity", "effort"]
    assert audit.likert_items[0]["max"] == 7 and audit.likert_items[1]["max"] == 5
    assert audit.likert_items[0]["min_label"] == "unclear"
    assert audit.probe_arms == [
        {"label": "Source A", "condition": "fast"},
        {"label": "Source B", "condition": "slow"},
    ]
    assert audit.error_categories == []
    assert audit.show_step_numbers is False and audit.style_normalisation is True
    assert audit.context_window == 2 and audit.seed == ""
    # and the edit page shows the saved rows back
    html = client.get(response["Location"]).content.decode()
    assert 'value="effort"' in html and 'value="Source B"' in html


def test_field_errors_are_shown_by_the_field_and_nothing_is_created(admin_user):
    # given an admin posting a scale upside down, a threshold below chance and a broken rule
    client = _client(admin_user)
    post = _likert_post(
        **{
            "likert_items-0-min": "5",
            "likert_items-0-max": "3",
            "likert_items-5-key": "clarity",
            "leak_threshold": "0.2",
            "normaliser_rules-0-pattern": "(unclosed",
            "normaliser_rules-0-replacement": "x",
        }
    )
    # when they save
    response = client.post(reverse("annotations:audit-new"), post)
    # then the page answers 400 with each problem next to its field, and keeps what was typed
    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="err_likert_items-0-max"' in html
    assert 'id="err_leak_threshold"' in html
    assert "rule 1" in html and "(unclosed" in html
    assert 'value="How clear is it?"' in html
    assert 'aria-invalid="true"' in html
    assert not Audit.objects.filter(slug="page-study").exists()


def test_the_guidelines_preview_renders_markdown_safely_and_saves_nothing(admin_user):
    # given an admin whose guidelines hold Markdown and a script tag
    client = _client(admin_user)
    post = _likert_post(
        guidelines="## Rules\n\n**Bold** <script>alert(1)</script>", action="preview"
    )
    # when they ask for a preview
    response = client.post(reverse("annotations:audit-new"), post)
    # then the rendered Markdown is shown, the script only as text, and no audit exists
    assert response.status_code == 200
    html = response.content.decode()
    assert "<h2>Rules</h2>" in html and "<strong>Bold</strong>" in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert not Audit.objects.exists()


def test_editing_keeps_the_slug_and_refuses_a_seed_change_once_data_exists(admin_user, demo_audit):
    # given an audit with imported traces (its secret is in use)
    client = _client(admin_user)
    url = reverse("annotations:audit-edit", args=[demo_audit.slug])
    secret = demo_audit.blinding_seed
    page = client.get(url).content.decode()
    assert 'name="slug"' not in page  # found by its slug: not editable
    post = {
        "kind": "step_labels",
        "name": "Renamed",
        "annotator_title": "Step review",
        "guidelines": "",
        "context_mode": "preceding",
        "context_window": "",
        "normaliser_version": demo_audit.normaliser_version,
        "style_normalisation": "on",
        "hidden_repeat_share": "0.1",
        "repeat_min_gap": "10",
        "leak_threshold": "0.6",
        "seed": "now-reproducible",
        "error_categories-0": "factual error",
        "error_categories-1": "other",
        "action": "save",
    }
    # when the admin sets a seed
    response = client.post(url, post)
    # then it is refused at the seed field and nothing changed
    assert response.status_code == 400
    assert 'id="err_seed"' in response.content.decode()
    demo_audit.refresh_from_db()
    assert demo_audit.name == "Demo for tests" and demo_audit.blinding_seed == secret
    # when they save without a seed
    response = client.post(url, {**post, "seed": ""})
    # then the other settings are saved (an empty window: all preceding steps)
    assert response.status_code == 302
    demo_audit.refresh_from_db()
    assert demo_audit.name == "Renamed" and demo_audit.context_window is None
    assert demo_audit.error_categories == ["factual error", "other"]
    assert demo_audit.hidden_repeat_share == 0.1 and demo_audit.blinding_seed == secret
