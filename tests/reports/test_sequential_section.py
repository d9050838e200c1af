"""The report's waves section (issue 15): confidence sequences after each wave, the stopping
rule from the locked plan, the advice sentence, the table and the page."""

import numpy as np
import pytest

from annotations.models import BatchItem, Condition
from annotations.services.batches import batch_assign, batch_build, batch_wave_release
from annotations.services.labels import label_save
from auditapp.agreement.sequential import confidence_sequence
from auditapp.exceptions import ApplicationError
from reports.exports import report_tables
from reports.render import report_html
from reports.services import analysis_plan_lock, report_build

# Verdict per arm by condition name: one arm mostly wrong, one never, one in between.
ERROR_SHARE = {"teacher": 0.0, "student-before": 0.5, "student-after": 1.0}


@pytest.fixture
def waved(demo_audit, admin_user, clinician):
    batch = batch_build(
        audit=demo_audit, name="w", size=30, segmentation="given", waves=3, created_by=admin_user
    )
    (mine,) = batch_assign(batch=batch, annotators=[clinician])
    return batch, mine


def _label_released(mine, clinician):
    """Label every open item: errors at the arm's share, in position order."""
    done = set(mine.labels.values_list("assignment_item_id", flat=True))
    counts: dict[str, int] = {}
    for item in mine.items.select_related("batch_item__step__trace__condition").order_by(
        "position"
    ):
        if item.pk in done:
            continue
        step = item.batch_item.step
        name = step.trace.condition.name
        counts[name] = counts.get(name, 0) + 1
        error = (counts[name] % 2 == 0) if ERROR_SHARE[name] == 0.5 else ERROR_SHARE[name] == 1
        label_save(
            annotator=clinician,
            assignment_public_id=mine.public_id,
            position=item.position,
            verdict="error" if error else "correct",
            error_category=(mine.batch.audit.error_categories or [""])[0] if error else "",
        )


def _expected_rates(batch) -> dict[str, float]:
    """Per blind code, the labelled share of errors (uniform π within an arm: HT = mean)."""
    out = {}
    for condition in Condition.objects.filter(audit=batch.audit):
        verdicts = list(
            BatchItem.objects.filter(
                batch=batch, step__trace__condition=condition, assignment_items__label__isnull=False
            ).values_list("assignment_items__label__verdict", flat=True)
        )
        out[condition.blind_code] = float(np.mean([v == "error" for v in verdicts]))
    return out


def test_section_after_each_wave_gives_sequences_advice_and_table(waved, clinician, admin_user):
    # given wave 1 labelled
    batch, mine = waved
    _label_released(mine, clinician)
    # when
    section = report_build(audit=batch.audit, resamples=20)["sequential"]
    # then one look (wave 1), the estimates are the labelled shares, and the rule says go on
    (entry,) = section["batches"]
    assert [look["wave"] for look in entry["looks"]] == [1]
    arms = {a["arm"]: a for a in entry["looks"][0]["arms"]}
    for code, rate in _expected_rates(batch).items():
        assert arms[code]["estimate"] == pytest.approx(rate)
        assert arms[code]["low"] <= rate <= arms[code]["high"]
    assert entry["advice"].startswith("go on")
    assert entry["fired_at_wave"] is None
    assert section["rule_locked"] is False and "not pre-registered" in section["note"]
    # the gaps are the differences of the arms' sequences, neighbours in estimate order
    look = entry["looks"][0]
    for gap in look["gaps"]:
        lo, hi = arms[gap["lower"]], arms[gap["higher"]]
        assert gap["low"] == pytest.approx(hi["low"] - lo["high"])
        assert gap["high"] == pytest.approx(hi["high"] - lo["low"])
    # when the next waves are released and labelled
    for _ in range(2):
        batch_wave_release(batch=batch, by=admin_user)
        _label_released(mine, clinician)
    report = report_build(audit=batch.audit, resamples=20)
    entry = report["sequential"]["batches"][0]
    # then a look per wave, with the labels growing
    assert [look["wave"] for look in entry["looks"]] == [1, 2, 3]
    totals = [sum(look["n_labels"].values()) for look in entry["looks"]]
    assert totals == sorted(totals) and totals[-1] == 30
    # and the table and the page show it
    table = report_tables(report)["sequential"]
    assert set(table["wave"]) == {1, 2, 3}
    assert len(table) == 3 * (3 + 2)  # 3 arms and 2 gaps per wave
    html = report_html(report)
    assert "Waves and the stopping rule" in html and entry["advice"] in html


def test_stopping_rule_comes_from_the_locked_plan(waved, clinician, researcher):
    # given a plan fixing α and t*
    batch, mine = waved
    analysis_plan_lock(
        audit=batch.audit,
        user=researcher,
        plan={"stopping": {"alpha": 0.2, "labels_per_arm": 40}},
    )
    _label_released(mine, clinician)
    # when
    section = report_build(audit=batch.audit, resamples=20)["sequential"]
    # then the sequences are those of α = 0.2 at 3 arms, tuned for 40 labels
    entry = section["batches"][0]
    assert section["rule_locked"] is True
    assert entry["alpha"] == 0.2 and entry["t_opt"] == 40
    assert "0.2/3" in entry["rule"]
    code = Condition.objects.get(audit=batch.audit, name="student-after").blind_code
    arm = next(a for a in entry["looks"][0]["arms"] if a["arm"] == code)
    n = entry["looks"][0]["n_labels"][code]
    cs = confidence_sequence(np.ones(n), alpha=0.2 / 3, t_opt=40)
    assert arm["low"] == pytest.approx(cs.low[-1])


@pytest.mark.parametrize(
    "stopping",
    [{"alpha": 0}, {"alpha": 0.9}, {"alpha": "x"}, {"labels_per_arm": 0}, {"beta": 1}, []],
    ids=["alpha-0", "alpha-big", "alpha-text", "t-zero", "unknown-key", "not-an-object"],
)
def test_bad_stopping_rules_are_refused(demo_audit, researcher, stopping):
    with pytest.raises(ApplicationError, match="stopping"):
        analysis_plan_lock(audit=demo_audit, user=researcher, plan={"stopping": stopping})


def test_no_section_rows_without_waves(demo_audit, admin_user, clinician):
    batch = batch_build(audit=demo_audit, name="one", size=12, segmentation="given")
    batch_assign(batch=batch, annotators=[clinician])
    assert report_build(audit=demo_audit, resamples=20)["sequential"]["batches"] == []


def test_stratified_ppi_batch_is_estimated_with_its_strata(demo_audit, admin_user, clinician):
    # given a stratified-PPI batch whose judge says "error" on every third step
    from annotations.services import active_design

    steps = {}

    def source(argument):
        def probabilities(pks):
            steps.update({pk: 0.8 if pk % 3 == 0 else 0.1 for pk in pks})
            return {pk: steps[pk] for pk in pks}

        return probabilities, "a test judge"

    active_design.register_uncertainty_source("test-judge", source)
    batch = batch_build(
        audit=demo_audit,
        name="sppi",
        size=30,
        segmentation="given",
        design="stratified-ppi",
        uncertainty="test-judge:1",
        created_by=admin_user,
    )
    (mine,) = batch_assign(batch=batch, annotators=[clinician])
    _label_released(mine, clinician)
    # when
    report = report_build(audit=demo_audit, resamples=20)
    (entry,) = report["stratified_ppi"]["batches"]
    # then each arm's estimate is Σ W_h ȳ_h over its strata, computed here by hand
    strata = {s["key"]: s for s in batch.design["strata"]}
    for row in entry["rows"]:
        code = Condition.objects.get(audit=demo_audit, blind_code=row["condition"]).blind_code
        keys = [k for k, s in strata.items() if s["condition"] == code and s["population"]]
        big_n = sum(strata[k]["population"] for k in keys)
        expected = 0.0
        for k in keys:
            verdicts = list(
                BatchItem.objects.filter(batch=batch, stratum=k).values_list(
                    "assignment_items__label__verdict", flat=True
                )
            )
            expected += strata[k]["population"] / big_n * np.mean([v == "error" for v in verdicts])
        assert row["estimate"] == pytest.approx(expected)
        assert row["ci_low"] <= row["estimate"] <= row["ci_high"]
    assert len(entry["differences"]) == 3
    assert "Stratified PPI" in report_html(report)
    assert len(report_tables(report)["stratified_ppi"]) == 3


def test_the_plan_form_locks_the_stopping_rule(demo_audit, researcher):
    from reports.forms import PlanLockForm

    form = PlanLockForm(
        {
            "metrics": ["error_rates"],
            "abstain_rule": "exclude",
            "resamples": 100,
            "confidence_level": 0.95,
            "ece_bins": 10,
            "seed": 0,
            "stopping_alpha": 0.1,
            "stopping_labels_per_arm": 60,
        }
    )
    assert form.is_valid(), form.errors
    plan = analysis_plan_lock(audit=demo_audit, user=researcher, plan=form.plan())
    assert plan.plan["stopping"] == {"alpha": 0.1, "labels_per_arm": 60}
