"""The report's annotator section (issue 10): per clinician gold accuracy, repeat consistency
and agreement, checked against the database directly."""

from reports.exports import report_tables
from reports.render import report_context
from reports.services import report_build


def test_the_report_lists_each_expert_with_figures_from_their_labels(expert_labels):
    from annotations.models.batches import BatchItem
    from annotations.models.labels import Label

    audit = expert_labels
    # given: three of the batch's items are gold, with the reference verdict
    gold = list(
        BatchItem.objects.filter(batch__audit=audit).exclude(step__reference_verdict="")[:3]
    )
    for item in gold:
        item.is_gold, item.gold_verdict = True, item.step.reference_verdict
    BatchItem.objects.bulk_update(gold, ["is_gold", "gold_verdict"])
    # when
    report = report_build(audit=audit, resamples=20)
    # then one row per clinician; gold accuracy as counted in the database
    rows = {r["evaluator"]: r for r in report["annotators"]["quality"]}
    assert set(rows) == {"clinician1", "clinician2"}
    for name, row in rows.items():
        labels = Label.objects.filter(assignment__annotator__username=name)
        on_gold = labels.filter(assignment_item__batch_item__is_gold=True)
        hits = sum(x.verdict == x.assignment_item.batch_item.gold_verdict for x in on_gold)
        assert row["gold_items"] == 3 and row["gold_correct"] == hits
        assert row["n_labels"] == labels.count() - 3
    # and the two clinicians agree except on clinician2's every 7th flip
    pair = next(a for a in report["annotators"]["agreement"] if a["other"] == "clinician2")
    assert 0.8 < pair["percent_agreement"] < 0.9
    table = report_context(report, standalone=True)["tables"]["annotator_quality"]
    assert [r[0] for r in table.rows] == ["clinician1", "clinician2"]
    assert len(report_tables(report)["annotator_quality"]) == 2
