"""Fixtures of participant studies: a four-type trace-rating audit, a 16-trace batch (four of
each type), a study with practice, an attention check and a questionnaire, and a link."""

import pytest
from study_data import COMPLETION_CODE, EXAMPLES, LIKERT, STUDY_SETTINGS, TRACE_TYPES, make_batch


@pytest.fixture
def study_audit(db):
    from annotations.models import Audit, Trace
    from annotations.services.audits import audit_create
    from annotations.services.imports import import_file

    audit = audit_create(
        slug="study-test",
        name="Interpretability study: structured traces win",
        annotator_title="Rating texts",
        kind=Audit.Kind.TRACE_RATINGS,
        likert_items=LIKERT,
    )
    import_file(audit=audit, path=EXAMPLES / "traces.jsonl", segmenter_names=["given"])
    for i, trace in enumerate(Trace.objects.filter(audit=audit).order_by("external_id")):
        trace.trace_type = TRACE_TYPES[i % 4]
        trace.save(update_fields=["trace_type"])
    return audit


@pytest.fixture
def study_batch(study_audit):
    return make_batch(study_audit, name="s16", per_type=4)


@pytest.fixture
def study(study_audit):
    from studies.services.setup import study_configure

    return study_configure(audit=study_audit, settings=STUDY_SETTINGS)


@pytest.fixture
def study_link(study, study_audit, study_batch, admin_user):
    from studies.services.setup import study_link_create

    return study_link_create(
        audit=study_audit,
        batch=study_batch,
        capacity=8,
        completion_code=COMPLETION_CODE,
        created_by=admin_user,
        name="wave 1",
    )
