import pytest


@pytest.mark.parametrize(
    "url",
    [
        "/admin/annotations/batch/",
        "/admin/annotations/assignment/",
        "/admin/annotations/label/",
        "/admin/annotations/tracerating/",
    ],
)
def test_admin_lists_render(client, admin_user, assigned, url):
    client.force_login(admin_user)
    assert client.get(url).status_code == 200


def test_admin_change_pages_render(client, admin_user, assigned, step_batch):
    from annotations.services.labels import label_save

    mine, _ = assigned
    label = label_save(
        annotator=mine.annotator, assignment_public_id=mine.public_id, position=1, verdict="correct"
    )
    client.force_login(admin_user)
    assert client.get(f"/admin/annotations/batch/{step_batch.pk}/change/").status_code == 200
    assert client.get(f"/admin/annotations/assignment/{mine.pk}/change/").status_code == 200
    assert client.get(f"/admin/annotations/label/{label.pk}/change/").status_code == 200
