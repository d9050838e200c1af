"""Batches released in waves (issue 15): an unreleased item is out of every annotator's reach.

Hostile: the clinician walks every page and JSON endpoint of the assignment, asks for
positions past the released ones (read, label, skip, the label page), labels and submits the
first wave, and the texts of unreleased steps must appear in no answer; releasing the next
wave reopens the submitted assignment (logged) and deals exactly that wave's items.
"""

from collections import Counter

import pytest
from django.core.management import call_command

from annotations.models import Assignment, AssignmentEvent, AssignmentItem, Audit, BatchItem
from annotations.services.batches import batch_assign, batch_build, batch_wave_release
from auditapp.exceptions import ApplicationError, ConflictError

WAVES = 3


@pytest.fixture
def waved(demo_audit, admin_user, clinician):
    # Step only: a released step's context must not show an unreleased step of its trace by
    # design, so any unreleased text in a body would be a leak.
    Audit.objects.filter(pk=demo_audit.pk).update(context_mode=Audit.ContextMode.STEP_ONLY)
    demo_audit.refresh_from_db()
    batch = batch_build(
        audit=demo_audit,
        name="waves",
        size=30,
        segmentation="given",
        waves=WAVES,
        created_by=admin_user,
    )
    (mine,) = batch_assign(batch=batch, annotators=[clinician])
    return batch, mine


def _unreleased_texts(batch, released: int) -> set[str]:
    """Blinded texts of unreleased items that no released item shares (so finding one in a
    body can only be a leak)."""
    items = BatchItem.objects.filter(batch=batch).values_list("wave", "step__blinded_text")
    shown = {t for w, t in items if w <= released}
    return {t for w, t in items if w > released and t not in shown and len(t) > 12}


def _bodies(client, mine, extra_positions: int) -> dict[str, tuple[int, str]]:
    urls = ["/", "/my/", f"/my/{mine.public_id}/", "/api/my/assignments/"]
    api = f"/api/my/assignments/{mine.public_id}/"
    urls += [api, f"{api}next/"]
    total = mine.items.count()
    for position in range(1, total + extra_positions + 1):
        urls.append(f"/my/{mine.public_id}/{position}/")
        urls.append(f"/api/my/assignments/{mine.public_id}/items/{position}/")
    seen = {}
    for url in urls:
        response = client.get(url)
        seen[url] = (response.status_code, response.content.decode())
    return seen


def test_batch_items_are_split_into_waves_within_each_stratum(waved):
    # given
    batch, _ = waved
    # then every stratum's sample is cut into near-equal waves
    per = Counter(BatchItem.objects.filter(batch=batch).values_list("stratum", "wave"))
    for stratum in {s for s, _ in per}:
        sizes = [per[stratum, w] for w in range(1, WAVES + 1)]
        assert max(sizes) - min(sizes) <= 1, (stratum, sizes)
    assert batch.design["waves"]["count"] == WAVES
    assert sum(batch.design["waves"]["sampled_per_wave"]) == 30
    assert (batch.waves, batch.waves_released) == (WAVES, 1)


def test_unreleased_items_are_never_visible_or_writable(client, waved, clinician):
    # given
    batch, mine = waved
    wave_one = BatchItem.objects.filter(batch=batch, wave=1).count()
    secrets = _unreleased_texts(batch, released=1)
    assert secrets, "the test needs unreleased texts to look for"
    client.force_login(clinician)
    # then the assignment holds wave 1 only
    assert mine.items.count() == wave_one
    assert set(mine.items.values_list("batch_item__wave", flat=True)) == {1}
    assert client.get(f"/api/my/assignments/{mine.public_id}/").json()["total"] == wave_one
    # when the clinician walks everything, and positions past the released ones
    bodies = _bodies(client, mine, extra_positions=BatchItem.objects.filter(batch=batch).count())
    # then past the end is a 404 everywhere, and no unreleased text appears anywhere
    for position in range(wave_one + 1, wave_one + 25):
        base = f"/api/my/assignments/{mine.public_id}/items/{position}/"
        assert bodies[base][0] == 404
        assert bodies[f"/my/{mine.public_id}/{position}/"][0] == 404
        saved = client.put(f"{base}label/", {"verdict": "error"}, content_type="application/json")
        assert saved.status_code == 404
        assert client.post(f"{base}skip/").status_code == 404
    leaks = [(url, t[:30]) for url, (_, body) in bodies.items() for t in secrets if t in body]
    assert not leaks
    # when the first wave is labelled and submitted
    for position in range(1, wave_one + 1):
        url = f"/api/my/assignments/{mine.public_id}/items/{position}/label/?next=unlabelled"
        response = client.put(url, {"verdict": "correct"}, content_type="application/json")
        assert response.status_code == 200
        for text in secrets:
            assert text not in response.content.decode()
    nxt = client.get(f"/api/my/assignments/{mine.public_id}/next/")
    assert all(t not in nxt.content.decode() for t in secrets)
    assert client.post(f"/api/my/assignments/{mine.public_id}/submit/").status_code == 200
    # then nothing of waves 2 and 3 was written
    assert not AssignmentItem.objects.filter(assignment=mine, batch_item__wave__gt=1).exists()


def test_releasing_a_wave_reopens_and_deals_only_that_wave(api_client, waved, admin_user):
    # given a submitted first wave
    batch, mine = waved
    Assignment.objects.filter(pk=mine.pk).update(submitted_at="2026-12-01T10:00:00Z")
    before = mine.items.count()
    # when an admin releases wave 2 through the API
    api_client.force_authenticate(admin_user)
    response = api_client.post(f"/api/batches/{batch.pk}/release-wave/")
    # then the assignment is open again (logged) and holds waves 1 and 2, in that order
    assert response.status_code == 200, response.content
    assert response.json()["wave"] == 2
    mine.refresh_from_db()
    assert mine.submitted_at is None
    event = AssignmentEvent.objects.get(assignment=mine)
    assert event.by == admin_user and "wave 2" in event.note
    waves = list(mine.items.order_by("position").values_list("batch_item__wave", flat=True))
    assert waves == sorted(waves) and set(waves) == {1, 2}
    assert len(waves) - before == BatchItem.objects.filter(batch=batch, wave=2).count()
    assert response.json()["items_added"] == {mine.public_id: len(waves) - before}
    assert list(mine.items.order_by("position").values_list("position", flat=True)) == list(
        range(1, len(waves) + 1)
    )
    # when the last wave is released, then nothing is left to release
    assert api_client.post(f"/api/batches/{batch.pk}/release-wave/").status_code == 200
    again = api_client.post(f"/api/batches/{batch.pk}/release-wave/")
    assert again.status_code == 409
    assert mine.items.count() == BatchItem.objects.filter(batch=batch).count()


def test_only_admins_release_waves(api_client, waved, clinician, researcher):
    batch, _ = waved
    for user in (clinician, researcher):
        api_client.force_authenticate(user)
        assert api_client.post(f"/api/batches/{batch.pk}/release-wave/").status_code == 403
    batch.refresh_from_db()
    assert batch.waves_released == 1


def test_release_wave_command_and_the_batch_page_button(client, waved, admin_user, capsys):
    batch, _ = waved
    # the page shows the button
    client.force_login(admin_user)
    page = client.get(f"/batches/{batch.pk}/").content.decode()
    assert "Release wave 2" in page
    # the button releases wave 2
    response = client.post(f"/batches/{batch.pk}/", {"release_wave": "1"})
    assert response.status_code == 302
    batch.refresh_from_db()
    assert batch.waves_released == 2
    # the command releases wave 3, then says there is nothing left
    call_command("release_wave", "--batch", str(batch.pk))
    assert "wave 3 of 3 released" in capsys.readouterr().out
    with pytest.raises(Exception, match="All 3 waves"):
        call_command("release_wave", "--batch", str(batch.pk))


def test_waves_are_refused_where_they_make_no_sense(demo_audit, rating_audit):
    with pytest.raises(ApplicationError, match="at least 10 sampled"):
        batch_build(audit=demo_audit, name="w", size=6, segmentation="given", waves=10)
    with pytest.raises(ApplicationError, match=r"1\.\.20"):
        batch_build(audit=demo_audit, name="w", size=6, segmentation="given", waves=0)
    with pytest.raises(ApplicationError, match="step-label"):
        batch_build(audit=rating_audit, name="w", size=6, segmentation="given", waves=2)


def test_a_release_before_assignment_is_dealt_at_assignment(demo_audit, clinician):
    batch = batch_build(audit=demo_audit, name="w", size=12, segmentation="given", waves=3)
    release = batch_wave_release(batch=batch, by=None)
    assert release.items_added == {}
    (mine,) = batch_assign(batch=batch, annotators=[clinician])
    assert set(mine.items.values_list("batch_item__wave", flat=True)) == {1, 2}
    assert batch_wave_release(batch=batch, by=None).wave == 3
    with pytest.raises(ConflictError):
        batch_wave_release(batch=batch, by=None)


def test_a_new_wave_goes_to_whoever_holds_the_reassigned_work(waved, other_clinician):
    # given the first wave moved to another clinician
    from annotations.services.batches import assignment_reassign

    batch, mine = waved
    theirs = assignment_reassign(assignment=mine, to_annotator=other_clinician)
    # when wave 2 is released
    release = batch_wave_release(batch=batch, by=None)
    # then it is dealt to the new assignment only
    assert set(release.items_added) == {theirs.public_id}
    assert not AssignmentItem.objects.filter(assignment=mine, batch_item__wave=2).exists()
    assert AssignmentItem.objects.filter(assignment=theirs, batch_item__wave=2).count() == (
        BatchItem.objects.filter(batch=batch, wave=2).count()
    )


def test_create_batch_takes_waves(demo_audit, clinician):
    from annotations.models import Batch

    call_command(
        "create_batch", audit=demo_audit.slug, size=12, waves=3, annotators=clinician.username
    )
    batch = Batch.objects.get(audit=demo_audit)
    assert (batch.waves, batch.waves_released) == (3, 1)
    (assignment,) = batch.assignments.all()
    assert set(assignment.items.values_list("batch_item__wave", flat=True)) == {1}
