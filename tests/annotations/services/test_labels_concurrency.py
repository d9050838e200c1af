"""Two tabs (or a double click) saving the same item at once: one label, every change kept."""

import threading

import pytest
from django.db import connection

from annotations.models import Label, LabelRevision
from annotations.services.labels import label_save


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_first_saves_create_one_label(demo_audit, clinician, other_clinician):
    from annotations.services.batches import batch_assign, batch_build

    # given
    batch = batch_build(audit=demo_audit, name="c", size=12, segmentation="given")
    (mine,) = batch_assign(batch=batch, annotators=[clinician])
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def save(verdict: str) -> None:
        try:
            barrier.wait()
            label_save(
                annotator=clinician,
                assignment_public_id=mine.public_id,
                position=1,
                verdict=verdict,
                error_category="other" if verdict == "error" else "",
                elapsed_ms=1000,
            )
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    # when eight saves race, half of them with another verdict
    threads = [
        threading.Thread(target=save, args=("correct" if i % 2 else "error",)) for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then
    assert errors == []
    label = Label.objects.get(assignment=mine)
    revisions = list(LabelRevision.objects.filter(label=label).order_by("revision"))
    assert [r.revision for r in revisions] == list(range(1, len(revisions) + 1))
    assert revisions[-1].verdict == label.verdict
    assert label.revision == len(revisions)
