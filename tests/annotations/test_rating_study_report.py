"""A trace-rating (Likert) study can be reported (issue 10's first finding): the command, the
report API, the researcher page and likert.csv answer for an audit that has ratings and no
step labels at all."""

import json

import pytest
from django.core.management import call_command

from annotations.models import Step
from annotations.services.labels import rating_save

pytestmark = pytest.mark.django_db


@pytest.fixture
def rated(rating_audit, rating_assigned, clinician, other_clinician):
    """Both participants rate every trace of their assignment on both items. The study has no
    step verdicts of any kind (the example file's reference verdicts are dropped)."""
    Step.objects.filter(audit=rating_audit).update(reference_verdict=None)
    for user, assignment in zip((clinician, other_clinician), rating_assigned, strict=True):
        for position in range(1, assignment.items.count() + 1):
            rating_save(
                annotator=user,
                assignment_public_id=assignment.public_id,
                position=position,
                answers={"interpretability": 1 + position % 5, "cognitive_load": 1 + user.pk % 5},
            )
    return rating_assigned


def test_a_rating_study_reports_through_the_command_api_page_and_likert_table(
    rated, rating_audit, client, researcher, tmp_path
):
    # when the researcher runs the command on the audit
    out = tmp_path / "report.json"
    call_command("agreement_report", audit=rating_audit.slug, resamples=20, out=str(out))
    report = json.loads(out.read_text())
    # then the Likert analysis is there, both items, every trace type rated
    rows = report["likert"]["rows"]
    assert {r["item"] for r in rows} == {"interpretability", "cognitive_load"}
    assert len({r["trace_type"] for r in rows}) == 3
    # and the API, the page and likert.csv answer
    client.force_login(researcher)
    slug = rating_audit.slug
    api = client.get(f"/api/reports/audits/{slug}/report/?resamples=20")
    page = client.get(f"/reports/audits/{slug}/?resamples=20")
    table = client.get(f"/api/reports/audits/{slug}/tables/likert.csv?resamples=20")
    assert (api.status_code, page.status_code, table.status_code) == (200, 200, 200)
    assert "interpretability" in table.content.decode()
