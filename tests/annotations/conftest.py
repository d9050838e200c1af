"""Fixtures of the labelling work: batches on the demo audit, a trace-rating audit."""

from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
FIXED_SEED = "f" * 64
TRACE_TYPES = ("chain-of-thought", "structured", "summary")
LIKERT = [
    {
        "key": "interpretability",
        "label": "How easy is this to follow?",
        "min": 1,
        "max": 5,
        "min_label": "very hard",
        "max_label": "very easy",
    },
    {
        "key": "cognitive_load",
        "label": "How much effort did it take?",
        "min": 1,
        "max": 5,
        "min_label": "very little",
        "max_label": "very much",
    },
]


@pytest.fixture
def celery_eager():
    """Tasks run in the test process as they are enqueued (no broker, no worker)."""
    from auditapp.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


@pytest.fixture
def seeded_audit(demo_audit):
    """The demo audit with a fixed secret, so statistical assertions are deterministic."""
    from annotations.models import Audit

    Audit.objects.filter(pk=demo_audit.pk).update(blinding_seed=FIXED_SEED)
    demo_audit.refresh_from_db()
    return demo_audit


@pytest.fixture
def step_batch(demo_audit, admin_user):
    from annotations.services.batches import batch_build

    return batch_build(
        audit=demo_audit,
        name="b1",
        size=24,
        segmentation="given",
        overlap=2,
        created_by=admin_user,
    )


@pytest.fixture
def assigned(step_batch, clinician, other_clinician):
    """The step batch given to both clinicians (overlap 2: both see all 24 steps)."""
    from annotations.services.batches import batch_assign

    mine, theirs = batch_assign(batch=step_batch, annotators=[clinician, other_clinician])
    return mine, theirs


@pytest.fixture
def rating_audit(db):
    """A trace-rating audit: the demo traces under three trace types."""
    from annotations.models import Audit, Trace
    from annotations.services.audits import audit_create
    from annotations.services.imports import import_file

    audit = audit_create(
        slug="rating-test",
        name="Rating study",
        kind=Audit.Kind.TRACE_RATINGS,
        likert_items=LIKERT,
    )
    import_file(audit=audit, path=EXAMPLES / "traces.jsonl", segmenter_names=["given"])
    for i, trace in enumerate(Trace.objects.filter(audit=audit).order_by("external_id")):
        trace.trace_type = TRACE_TYPES[i % 3]
        trace.save(update_fields=["trace_type"])
    return audit


@pytest.fixture
def rating_assigned(rating_audit, clinician, other_clinician, admin_user):
    from annotations.services.batches import batch_assign, batch_build

    batch = batch_build(
        audit=rating_audit,
        name="r1",
        size=12,
        segmentation="given",
        overlap=2,
        stratify_by=["trace_type"],
        allocation="proportional",
        created_by=admin_user,
    )
    return batch_assign(batch=batch, annotators=[clinician, other_clinician])
