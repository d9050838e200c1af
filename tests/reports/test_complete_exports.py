"""Complete exports (issue 10): everything the experts entered, every revision, every step —
checked against the database, through the table API in CSV and Parquet."""

import io

import pandas as pd

from annotations.models import Step
from annotations.models.labels import Label, LabelRevision
from annotations.services.labels import label_save
from reports.collect import expert_labels_collect, revisions_collect, steps_collect


def test_expert_labels_carry_what_was_entered_and_shown(expert_labels, clinician):
    audit = expert_labels
    # given: clinician1 changes their mind on item 1, with a comment
    label_save(
        annotator=clinician,
        assignment_public_id="as0",
        position=1,
        verdict="abstain",
        comment="=cmd|' /C calc'!A0 unsure",
        elapsed_ms=4200,
        flagged=True,
        flag_note="look again",
    )
    # when
    table = expert_labels_collect(audit)
    # then one row per label, with its history's length, position and what was shown
    assert len(table) == Label.objects.filter(step__audit=audit).count()
    changed = table[(table["evaluator"] == "clinician1") & (table["position"] == 1)].iloc[0]
    label = Label.objects.get(assignment__public_id="as0", assignment_item__position=1)
    assert changed["verdict"] == "abstain" and changed["revisions"] == label.revision == 2
    assert changed["comment"].endswith("unsure") and changed["seconds_on_task"] == 4.2
    assert changed["step_id"] == label.step.public_id
    assert changed["batch"] == "b1" and changed["assignment"] == "as0"
    assert changed["first_saved"] <= changed["last_saved"]
    assert not table["is_gold"].any() and not table["is_hidden_repeat"].any()
    assert changed["flagged"] and changed["flag_note"] == "look again"
    assert table["flagged"].sum() == 1 and not table["skipped"].any()
    # trace ids are pseudonyms while the audit is blinded
    assert not set(table["trace_id"]) & set(audit.traces.values_list("external_id", flat=True))
    # and the revisions table holds the history
    revisions = revisions_collect(audit)
    assert len(revisions) == LabelRevision.objects.filter(label__step__audit=audit).count()
    mine = revisions[revisions["step_id"] == label.step.public_id]
    assert list(mine.loc[mine["evaluator"] == "clinician1", "revision"]) == sorted(
        LabelRevision.objects.filter(label=label).values_list("revision", flat=True)
    )


def test_steps_table_lets_outside_verdicts_join_on_the_public_id(expert_labels):
    audit = expert_labels
    steps = steps_collect(audit)
    assert len(steps) == Step.objects.filter(audit=audit).count()
    first = Step.objects.filter(audit=audit, segmentation="given").order_by("trace_id", "index")[0]
    row = steps[steps["step_id"] == first.public_id].iloc[0]
    assert row["position"] == first.index + 1 and row["blinded_text"] == first.blinded_text
    joined = expert_labels_collect(audit).merge(steps, on="step_id", suffixes=("", "_step"))
    assert len(joined) == Label.objects.filter(step__audit=audit).count()


def test_the_tables_download_as_csv_and_parquet(expert_labels, researcher, clinician, client):
    label_save(
        annotator=clinician,
        assignment_public_id="as0",
        position=1,
        verdict="abstain",
        comment="=cmd|' /C calc'!A0",
    )
    client.force_login(researcher)
    for name in ("expert_labels", "revisions", "steps"):
        csv = client.get(f"/api/reports/audits/{expert_labels.slug}/tables/{name}.csv")
        assert csv.status_code == 200, name
        frame = pd.read_csv(io.BytesIO(csv.content))
        parquet = client.get(f"/api/reports/audits/{expert_labels.slug}/tables/{name}.parquet")
        assert parquet.status_code == 200
        assert len(pd.read_parquet(io.BytesIO(parquet.content))) == len(frame)
    # a comment that looks like a formula is neutralised in the CSV
    text = client.get(f"/api/reports/audits/{expert_labels.slug}/tables/expert_labels.csv")
    assert b",=cmd" not in text.content and b"'=cmd" in text.content


def test_clinicians_and_anonymous_cannot_download_the_record(expert_labels, clinician, client):
    for name in ("expert_labels", "revisions", "steps"):
        url = f"/api/reports/audits/{expert_labels.slug}/tables/{name}.csv"
        assert client.get(url).status_code in (401, 403)
        client.force_login(clinician)
        assert client.get(url).status_code in (403, 404)
        client.logout()
