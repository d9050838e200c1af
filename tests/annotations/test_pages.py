import json
import re

import pytest

from annotations.services.labels import label_save


def _data(response) -> dict:
    match = re.search(
        r'<script id="item-data" type="application/json">(.*?)</script>',
        response.content.decode(),
        re.S,
    )
    return json.loads(match.group(1))


def test_my_assignments_page_shows_progress(client, assigned, clinician):
    # given
    mine, _ = assigned
    label_save(
        annotator=clinician, assignment_public_id=mine.public_id, position=1, verdict="correct"
    )
    client.force_login(clinician)
    # when
    response = client.get("/my/")
    # then
    body = response.content.decode()
    assert response.status_code == 200
    assert 'aria-valuenow="1"' in body
    assert "1 / 24" in body
    assert f"/my/{mine.public_id}/" in body


def test_assignment_resumes_at_first_unlabelled(client, assigned, clinician):
    mine, _ = assigned
    for position in (1, 2):
        label_save(
            annotator=clinician,
            assignment_public_id=mine.public_id,
            position=position,
            verdict="correct",
        )
    client.force_login(clinician)
    response = client.get(f"/my/{mine.public_id}/")
    assert response.status_code == 302
    assert response["Location"] == f"/my/{mine.public_id}/3/"


def test_label_page_renders_item_and_data(client, assigned, clinician):
    mine, _ = assigned
    client.force_login(clinician)
    response = client.get(f"/my/{mine.public_id}/1/")
    assert response.status_code == 200
    body = response.content.decode()
    data = _data(response)
    assert data["position"] == 1
    assert data["step"] in body.replace("&#x27;", "'").replace("&quot;", '"') or data["step"]
    assert "<script>" not in body  # no inline scripts: data goes through json_script
    assert 'type="module"' in body


@pytest.mark.parametrize("who", ["other_clinician", "researcher"])
def test_label_page_of_someone_else_is_404(client, assigned, request, who):
    mine, _ = assigned
    client.force_login(request.getfixturevalue(who))
    assert client.get(f"/my/{mine.public_id}/1/").status_code == 404
    assert client.get(f"/my/{mine.public_id}/").status_code == 404


def test_rating_page_renders_likert_items(client, rating_assigned, clinician):
    mine, _ = rating_assigned
    client.force_login(clinician)
    response = client.get(f"/my/{mine.public_id}/1/")
    assert response.status_code == 200
    assert 'name="likert-interpretability"' in response.content.decode()


def test_admin_pages_build_preview_and_assign(
    client, demo_audit, admin_user, clinician, other_clinician
):
    # given
    client.force_login(admin_user)
    form = {
        "name": "p1",
        "size": 12,
        "segmentation": "given",
        "overlap": 2,
        "seed": "",
        "allocation": "equal",
        "gold": 0,
        "hidden_repeat_share": 0,
    }
    # when previewing
    preview = client.post(f"/audits/{demo_audit.slug}/batches/", {**form, "preview": "1"})
    # then
    assert preview.status_code == 200
    assert "Preview: 12 of" in preview.content.decode()
    created = client.post(f"/audits/{demo_audit.slug}/batches/", {**form, "create": "1"})
    assert created.status_code == 302
    batch_url = created["Location"]
    assigned = client.post(
        batch_url, {"assign": "1", "annotators": [clinician.username, other_clinician.username]}
    )
    assert assigned.status_code == 302
    page = client.get(batch_url).content.decode()
    assert "clinician1" in page and "clinician2" in page
    assert "Progress per assignment" in page


def test_clinician_cannot_open_admin_pages(client, demo_audit, clinician):
    client.force_login(clinician)
    assert client.get(f"/audits/{demo_audit.slug}/batches/").status_code == 302  # to login


def test_guidelines_are_rendered_markdown_and_raw_html_stays_text(client, assigned, clinician):
    # given guidelines with Markdown, a table, and HTML an admin might paste
    mine, _ = assigned
    audit = mine.batch.audit
    audit.guidelines = (
        "# Labelling\n\n- **Correct**: the claim holds\n- *Error*: it does not\n\n"
        "| key | verdict |\n| --- | --- |\n| 1 | correct |\n\n"
        '<script>alert("x")</script> <img src=x onerror=alert(1)> [here](javascript:alert(1))'
    )
    audit.save(update_fields=["guidelines"])
    client.force_login(clinician)
    # when
    body = client.get(f"/my/{mine.public_id}/1/").content.decode()
    # then the dialog shows formatted guidelines
    dialog = body[
        body.index('id="guidelines-dialog"') : body.index(
            "</dialog>", body.index('id="guidelines-dialog"')
        )
    ]
    assert "<h1>Labelling</h1>" in dialog and "<strong>Correct</strong>" in dialog
    assert "<em>Error</em>" in dialog and "<td>correct</td>" in dialog
    # and nothing pasted runs: tags are escaped, the javascript: link is not a link
    assert "<script>alert" not in dialog and "&lt;script&gt;" in dialog
    assert "<img" not in dialog and "&lt;img src=x onerror=alert(1)&gt;" in dialog
    assert 'href="javascript:' not in dialog
