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


def test_an_expert_the_plan_excludes_stays_listed_and_marked(expert_labels, researcher):
    from reports.services import analysis_plan_lock

    audit = expert_labels
    # given a locked plan that leaves clinician2 out
    analysis_plan_lock(
        audit=audit,
        plan={"metrics": ["error_rates"], "exclusions": {"evaluators": ["clinician2"]}},
        user=researcher,
    )
    # when
    report = report_build(audit=audit, resamples=20)
    # then their labels are not used, but the quality table shows them, marked
    rows = {r["evaluator"]: r for r in report["annotators"]["quality"]}
    assert (
        rows["clinician2"]["excluded"] == "analysis plan" and rows["clinician1"]["excluded"] == ""
    )
    used = report["error_rates"]
    assert "clinician2" not in {r["evaluator"] for r in used}
    table = report_context(report, standalone=True)["tables"]["annotator_quality"]
    assert table.columns[-1] == "excluded"
    assert dict((r[0], r[-1]) for r in table.rows) == {
        "clinician1": "–",
        "clinician2": "analysis plan",
    }


def test_interval_headers_follow_the_report_confidence_level(expert_labels):
    # when the report is built at 90%
    report = report_build(audit=expert_labels, resamples=20, confidence_level=0.9)
    tables = report_context(report, standalone=True)["tables"]
    # then the headers say 90%, and κ's interval is a 90% one (narrower than at 95%)
    assert "90% CI" in tables["annotator_quality"].columns
    assert "κ 90% CI" in tables["pairwise_agreement"].columns
    wide = report_build(audit=expert_labels, resamples=20, confidence_level=0.95)

    def kappa_width(r):
        row = next(x for x in r["pairwise_agreement"] if x.get("kappa_ci_low") is not None)
        return row["kappa_ci_high"] - row["kappa_ci_low"]

    assert kappa_width(report) < kappa_width(wide)


def test_the_report_page_takes_a_confidence_level(client, researcher, expert_labels):
    from django.urls import reverse

    client.force_login(researcher)
    url = reverse("reports:audit", args=[expert_labels.slug])
    # when the page is asked at 90% / then it says so in the headers and the methods
    page = client.get(url + "?resamples=20&confidence_level=0.9")
    body = page.content.decode()
    assert page.status_code == 200 and "κ 90% CI" in body and "90% two-sided" in body
    # when the level is out of range / then a 400 that names the field, the default report
    bad = client.get(url + "?resamples=20&confidence_level=0.3")
    assert bad.status_code == 400 and "confidence_level" in bad.content.decode()
