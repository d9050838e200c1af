"""An audit's own hedging terms: words and phrases, checked the same way by the API, the
edit page and the model; the report's hedging rate counts them and its methods print them."""

import pytest
from django.test import Client
from django.urls import reverse

from annotations.models import Audit
from annotations.services.audits import audit_create

pytestmark = pytest.mark.django_db


def test_the_api_saves_terms_and_refuses_patterns_and_oversized_lists(api_client, admin_user):
    # given an audit and an admin
    audit_create(slug="hedges", name="Hedges")
    api_client.force_authenticate(admin_user)
    url = "/api/audits/hedges/"
    # when they set words and phrases
    saved = api_client.patch(
        url, {"hedging_terms": ["  not convinced", "can't say"]}, format="json"
    )
    # then they are stored trimmed and read back
    assert saved.status_code == 200, saved.content
    assert saved.json()["hedging_terms"] == ["not convinced", "can't say"]
    assert Audit.objects.get(slug="hedges").hedging_terms == ["not convinced", "can't say"]
    # when they send a pattern, a digit, a term already in the lexicon, a duplicate, a very
    # long term or too many terms
    for bad, says in (
        (["(a|b)*"], "only letters"),
        (["stage 2"], "only letters"),
        ([".*"], "only letters"),
        (["Probably"], "already in the lexicon"),
        (["hmm", "HMM"], "twice"),
        (["x" * 61], "2 to 60 characters"),
        ([f"term{'a' * n}" for n in range(51)], "50"),
        ("not a list", "list"),
    ):
        response = api_client.patch(url, {"hedging_terms": bad}, format="json")
        # then each is a 400 naming the field, and nothing changed
        assert response.status_code == 400, bad
        assert says in response.content.decode(), (bad, response.content)
        assert "hedging_terms" in response.content.decode()
    assert Audit.objects.get(slug="hedges").hedging_terms == ["not convinced", "can't say"]


def test_the_edit_page_edits_terms_as_rows(admin_user, demo_audit):
    # given the edit page of an audit
    client = Client()
    client.force_login(admin_user)
    url = reverse("annotations:audit-edit", args=[demo_audit.slug])
    page = client.get(url).content.decode()
    assert 'name="hedging_terms-0"' in page
    post = {
        "kind": "step_labels",
        "name": demo_audit.name,
        "annotator_title": demo_audit.annotator_title,
        "guidelines": "",
        "context_mode": demo_audit.context_mode,
        "context_window": "2",
        "normaliser_version": demo_audit.normaliser_version,
        "style_normalisation": "on",
        "hidden_repeat_share": "0",
        "repeat_min_gap": "10",
        "leak_threshold": "0.6",
        "seed": "",
        "action": "save",
        "hedging_terms-0": "not convinced",
        "hedging_terms-1": "",
    }
    for i, category in enumerate(demo_audit.error_categories):
        post[f"error_categories-{i}"] = category
    # when a term with regex syntax is posted
    refused = client.post(url, {**post, "hedging_terms-1": "maybe|perhaps"})
    # then the page says why, and keeps the audit as it was
    assert refused.status_code == 400
    assert "only letters" in refused.content.decode()
    demo_audit.refresh_from_db()
    assert demo_audit.hedging_terms == []
    # when a phrase is posted
    saved = client.post(url, post)
    # then it is saved
    assert saved.status_code == 302
    demo_audit.refresh_from_db()
    assert demo_audit.hedging_terms == ["not convinced"]


def test_the_report_counts_the_audits_terms_and_prints_them(demo_audit):
    # given a word of the demo's texts that the lexicon does not hold
    from annotations.models import Step
    from auditapp.agreement.hedging import hedging_flags
    from reports.services import report_build

    texts = list(
        Step.objects.filter(audit=demo_audit, segmentation="given").values_list(
            "blinded_text", flat=True
        )
    )
    word = next(
        w
        for text in texts
        for w in text.split()
        if w.isalpha() and len(w) > 4 and not any(hedging_flags([w]))
    )
    expected_extra = sum(
        1 for t, plain in zip(texts, hedging_flags(texts), strict=True)
        if not plain and hedging_flags([t], extra_terms=[word])[0]
    )  # fmt: skip
    before = report_build(audit=demo_audit, resamples=30)
    # when the audit adds it
    demo_audit.hedging_terms = [word]
    demo_audit.save()
    after = report_build(audit=demo_audit, resamples=30)
    # then the hedged steps grow by the steps only that word hedges, and methods name it
    hedged = lambda r: sum(row["n_hedged"] for row in r["hedging_language"]["rows"])  # noqa: E731
    assert expected_extra > 0
    assert hedged(after) - hedged(before) == expected_extra
    assert after["hedging_language"]["lexicon"]["extra_terms"] == [word]
    assert repr(word) in after["methods"]["hedging_language"]
    assert "own additions" not in before["methods"]["hedging_language"]
