"""The researcher's page renders a report once per data version: a repeat view draws no
figure and computes nothing; any change to what the report reads shows on the next view."""

from unittest import mock

from django.urls import reverse

from reports import render, services


def _label_one_step(audit, user, verdict="error"):
    from annotations.models import Step
    from annotations.models.batches import Assignment, AssignmentItem, Batch, BatchItem
    from annotations.models.labels import Label

    step = Step.objects.filter(audit=audit, segmentation="given").order_by("pk").first()
    batch = Batch.objects.create(audit=audit, name="one", segmentation="given", seed="1")
    item = BatchItem.objects.create(batch=batch, step=step, stratum="all")
    assignment = Assignment.objects.create(batch=batch, annotator=user, public_id="as-one")
    slot = AssignmentItem.objects.create(assignment=assignment, position=1, batch_item=item)
    return Label.objects.create(
        assignment_item=slot, assignment=assignment, step=step, verdict=verdict
    )


def test_a_repeat_view_renders_from_the_cache(client, demo_audit, researcher):
    # given a researcher who viewed the report once
    client.force_login(researcher)
    url = reverse("reports:audit", args=[demo_audit.slug]) + "?resamples=30"
    first = client.get(url)
    assert first.status_code == 200
    # when the page is viewed again with nothing changed
    with (
        mock.patch.object(services, "report_compute", wraps=services.report_compute) as compute,
        mock.patch.object(render, "error_rate_svg", wraps=render.error_rate_svg) as figure,
    ):
        again = client.get(url)
    # then nothing is computed or drawn, and the page is the same page
    assert again.status_code == 200
    assert compute.call_count == 0 and figure.call_count == 0
    body = again.content.decode()
    assert body.count('id="h-settings"') == 1
    assert 'class="rt-findings' in body or "Findings" in body
    assert first.content.decode().count("<svg") == body.count("<svg") > 0


def test_a_new_label_shows_on_the_next_view(client, demo_audit, researcher, clinician):
    # given a viewed report without expert labels
    client.force_login(researcher)
    url = reverse("reports:audit", args=[demo_audit.slug]) + "?resamples=30"
    before = client.get(url).content.decode()
    assert "expert 1" not in before
    # when a clinician labels one step
    label = _label_one_step(demo_audit, clinician)
    # then the next view shows the label (and computes the report again)
    after = client.get(url).content.decode()
    assert "expert 1" in after
    # and revising that label is seen as well
    with mock.patch.object(services, "report_compute", wraps=services.report_compute) as compute:
        label.verdict = "correct"
        label.save()
        client.get(url)
    assert compute.call_count == 1


def test_a_changed_audit_setting_or_batch_gate_is_a_new_version(demo_audit):
    # given the data version of the audit
    params = services.ReportParams()
    key = services.report_cache_key(audit=demo_audit, params=params)
    assert services.report_cache_key(audit=demo_audit, params=params) == key
    # when a setting the report prints changes
    demo_audit.guidelines = demo_audit.guidelines + " (revised)"
    demo_audit.save()
    changed = services.report_cache_key(audit=demo_audit, params=params)
    # then the key moves; and again when a batch's leak-gate record changes
    assert changed != key
    from annotations.models import Batch

    batch = Batch.objects.create(audit=demo_audit, name="b", segmentation="given", seed="1")
    with_batch = services.report_cache_key(audit=demo_audit, params=params)
    assert with_batch != changed
    batch.leak_gate = {"confirmed_by": "admin"}
    batch.save()
    assert services.report_cache_key(audit=demo_audit, params=params) != with_batch
