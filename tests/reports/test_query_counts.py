"""The report API reads whole tables as columns: its query count does not grow with rows."""

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from annotations.models import Step
from annotations.models.batches import Assignment, AssignmentItem, Batch, BatchItem
from annotations.models.labels import Label

# Bounds measured on the demo audit (SQLite and PostgreSQL), with a little slack so a new
# field does not break the test, and far below one query per row. The report: 47 on SQLite
# once it gained the first-error, waves, stratified-PPI and study-exclusion sections (each
# reads its own few rows once); the test above checks that the count does not grow with rows.
MAX_REPORT_QUERIES = 55
MAX_INDEX_QUERIES = 3
MAX_TABLE_QUERIES = 12


def _label_more_steps(audit, user, *, segmentation: str) -> int:
    """A second batch: ``user`` labels every step of another segmentation."""
    batch = Batch.objects.create(audit=audit, name="more", segmentation=segmentation, seed="2")
    steps = list(Step.objects.filter(audit=audit, segmentation=segmentation).order_by("pk"))
    items = BatchItem.objects.bulk_create(
        [BatchItem(batch=batch, step=s, stratum="all", inclusion_probability=1.0) for s in steps]
    )
    assignment = Assignment.objects.create(batch=batch, annotator=user, public_id="as-more")
    slots = AssignmentItem.objects.bulk_create(
        [
            AssignmentItem(assignment=assignment, position=i + 1, batch_item=item)
            for i, item in enumerate(items)
        ]
    )
    Label.objects.bulk_create(
        [
            Label(
                assignment_item=slot,
                assignment=assignment,
                step=step,
                verdict="error" if i % 4 == 0 else "correct",
                probe_guess="no idea" if i % 5 == 0 else "",
            )
            for i, (slot, step) in enumerate(zip(slots, steps, strict=True))
        ]
    )
    return len(steps)


def _count(api_client, url: str, params: dict | None = None) -> int:
    cache.clear()
    # force_authenticate reuses one user object, which memoises its groups for the request;
    # a real request loads a fresh user, so forget the memo to count like one.
    api_client.handler._force_user.__dict__.pop("_stepaudit_groups", None)
    with CaptureQueriesContext(connection) as queries:
        response = api_client.get(url, params or {})
    assert response.status_code == 200, response.content[:300]
    return len(queries)


def test_report_endpoint_queries_do_not_grow_with_rows(
    api_client, expert_labels, researcher, clinician, django_assert_max_num_queries
):
    # given a researcher and the report of an audit with expert labels
    api_client.force_authenticate(researcher)
    url = reverse("reports-api:report", args=[expert_labels.slug])
    params = {"resamples": 20}
    before = _count(api_client, url, params)
    # when hundreds more labels arrive
    added = _label_more_steps(expert_labels, clinician, segmentation="sentences")
    assert added > 100
    # then the same number of queries, under the bound
    after = _count(api_client, url, params)
    assert after == before
    cache.clear()
    with django_assert_max_num_queries(MAX_REPORT_QUERIES):
        api_client.get(url, params)


@pytest.mark.parametrize("name", ["labels", "error_rates", "blinding_index"])
def test_table_download_queries_do_not_grow_with_rows(
    api_client, expert_labels, researcher, clinician, name
):
    # given
    api_client.force_authenticate(researcher)
    url = reverse("reports-api:table", args=[expert_labels.slug, name, "csv"])
    before = _count(api_client, url, {"resamples": 20})
    # when
    _label_more_steps(expert_labels, clinician, segmentation="sentences")
    # then
    after = _count(api_client, url, {"resamples": 20})
    assert after == before
    if name == "labels":
        assert after <= MAX_TABLE_QUERIES


def test_table_index_queries_are_constant(
    api_client, expert_labels, researcher, clinician, django_assert_max_num_queries
):
    # given
    api_client.force_authenticate(researcher)
    url = reverse("reports-api:table-base", args=[expert_labels.slug])
    before = _count(api_client, url)
    # when
    _label_more_steps(expert_labels, clinician, segmentation="sentences")
    # then
    assert _count(api_client, url) == before
    with django_assert_max_num_queries(MAX_INDEX_QUERIES):
        response = api_client.get(url)
    assert "blinding_index" in response.json()["report_tables"]
