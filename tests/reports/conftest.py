"""Report tests: a private in-memory cache per test, and audits with experts and judges."""

import pytest
from django.apps import apps

CONDITION_NAMES = ("teacher", "student-before", "student-after")


@pytest.fixture
def condition_names() -> tuple[str, ...]:
    return CONDITION_NAMES


@pytest.fixture(autouse=True)
def _private_cache(settings):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "r"}
    }
    from django.core.cache import cache

    cache.clear()


def has_model(app_label: str, name: str) -> bool:
    try:
        apps.get_model(app_label, name)
    except LookupError:
        return False
    return True


@pytest.fixture
def expert_labels(demo_audit, clinician, other_clinician):
    """Two clinicians label every 'given' step of the demo audit (a batch with inclusion
    probability 0.5); their verdicts copy the reference, clinician2 flips every 7th."""
    if not has_model("annotations", "Label"):
        pytest.skip("labels models not installed yet")
    from annotations.models import Step
    from annotations.models.batches import Assignment, AssignmentItem, Batch, BatchItem
    from annotations.models.labels import Label

    batch = Batch.objects.create(audit=demo_audit, name="b1", segmentation="given", seed="1")
    steps = list(Step.objects.filter(audit=demo_audit, segmentation="given").order_by("pk"))
    items = BatchItem.objects.bulk_create(
        [BatchItem(batch=batch, step=s, stratum="all", inclusion_probability=0.5) for s in steps]
    )
    for n, user in enumerate((clinician, other_clinician)):
        assignment = Assignment.objects.create(batch=batch, annotator=user, public_id=f"as{n}")
        slots = AssignmentItem.objects.bulk_create(
            [
                AssignmentItem(assignment=assignment, position=i + 1, batch_item=item)
                for i, item in enumerate(items)
            ]
        )
        labels = []
        for i, (slot, step) in enumerate(zip(slots, steps, strict=True)):
            verdict = step.reference_verdict or "correct"
            if n == 1 and i % 7 == 0:
                verdict = "correct" if verdict == "error" else "error"
            labels.append(
                Label(assignment_item=slot, assignment=assignment, step=step, verdict=verdict)
            )
        Label.objects.bulk_create(labels)
    return demo_audit
