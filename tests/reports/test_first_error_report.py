"""The report's first-error section (issue 13): ProcessBench's accuracies and F1 for a judge in
first-error mode and for each expert, on a small audit whose expert labels are the derived
step labels a first-error answer makes (before the mark correct, the mark error, later none)."""

import io

import pandas as pd
import pytest

from annotations.models import Step, Trace
from annotations.services.labels import label_save
from reports.exports import frame_to_bytes, report_tables
from reports.render import report_context, report_html
from reports.services import report_build

pytestmark = pytest.mark.django_db

N_TRACES = 12


def _first_errors(audit):
    """Per trace (the first N_TRACES with 'given' steps): its steps in order and the first
    error the experts and the judge give (None = no error; "gap" = a step left unlabelled)."""
    plan = []
    for i, trace in enumerate(Trace.objects.filter(audit=audit).order_by("pk")[:N_TRACES]):
        steps = list(Step.objects.filter(trace=trace, segmentation="given").order_by("index"))
        n = len(steps)
        truth = None if i % 3 == 0 else 1 + i % n
        second = truth
        if (
            i % 4 == 1 and truth is not None
        ):  # clinician2 sees the error one step later (or none at the end)
            second = None if truth == n else truth + 1
        if i == 11:
            second = "gap"  # clinician2 leaves step 1 unlabelled: undefined
        judge = truth
        if i in (2, 6):  # the judge says "no error" on two erroneous traces
            judge = None
        if i == 3:  # and flags a correct trace
            judge = n
        plan.append({"trace": trace, "steps": steps, "c1": truth, "c2": second, "judge": judge})
    return plan


def _derived(k, n):
    """The step labels of a first-error answer: None → all correct; k → correct before, error."""
    if k is None:
        return ["correct"] * n
    return ["correct"] * (k - 1) + ["error"]


@pytest.fixture
def first_error_audit(demo_audit, clinician, other_clinician, make_first_error_judge):
    from annotations.models.batches import Assignment, AssignmentItem, Batch, BatchItem

    plan = _first_errors(demo_audit)
    batch = Batch.objects.create(audit=demo_audit, name="fe", segmentation="given", seed="1")
    steps = [s for p in plan for s in p["steps"]]
    items = BatchItem.objects.bulk_create(
        [BatchItem(batch=batch, step=s, stratum="all", inclusion_probability=1.0) for s in steps]
    )
    position_of = {}
    for n, user in enumerate((clinician, other_clinician)):
        assignment = Assignment.objects.create(batch=batch, annotator=user, public_id=f"fe{n}")
        AssignmentItem.objects.bulk_create(
            [
                AssignmentItem(assignment=assignment, position=i + 1, batch_item=item)
                for i, item in enumerate(items)
            ]
        )
        position_of[user.pk] = {item.step_id: i + 1 for i, item in enumerate(items)}
    # Expert labels through the labelling service, as the first-error page stores them.
    categories = [c["name"] if isinstance(c, dict) else c for c in demo_audit.error_categories]
    category = categories[0] if categories else ""
    for user, key, public in ((clinician, "c1", "fe0"), (other_clinician, "c2", "fe1")):
        for p in plan:
            k = p[key]
            labels = ["abstain-skip"] + ["correct"] * (len(p["steps"]) - 1) if k == "gap" else None
            labels = labels or _derived(k, len(p["steps"]))
            for step, verdict in zip(p["steps"], labels, strict=False):
                if verdict == "abstain-skip":
                    continue
                label_save(
                    annotator=user,
                    assignment_public_id=public,
                    position=position_of[user.pk][step.pk],
                    verdict=verdict,
                    error_category=category if verdict == "error" else "",
                )
    make_first_error_judge(demo_audit, plan)
    return demo_audit, plan


@pytest.fixture
def make_first_error_judge():
    def make(audit, plan):
        from judges.models import JudgeVerdict
        from judges.services import judge_create_or_update, run_create
        from judges.services.store import verdicts_store

        judge = judge_create_or_update(
            spec={
                "name": "fe-judge",
                "base_url": "http://127.0.0.1:9/v1",
                "model": "m",
                "label_mode": "first_error",
            }
        )
        run = run_create(audit=audit, judge=judge, segmentation="given")
        assert run.label_mode == "first_error"
        rows = [
            JudgeVerdict(run_id=run.pk, step_id=step.pk, verdict=verdict)
            for p in plan
            for step, verdict in zip(
                p["steps"], _derived(p["judge"], len(p["steps"])), strict=False
            )
        ]
        verdicts_store(run_id=run.pk, verdicts=rows)
        return run

    return make


def _expected(plan, who, against):
    """Accuracies by hand: traces where ``who`` is defined and a strict majority of the
    ``against`` experts with a defined first error agree on it (the reference)."""
    err = ok = n_err = n_ok = 0
    for p in plan:
        refs = [p[a] for a in against if p[a] != "gap"]
        winners = [r for r in set(refs) if 2 * refs.count(r) > len(refs)]
        if not winners or p[who] == "gap":
            continue
        ref = winners[0]
        if ref is None:
            n_ok += 1
            ok += p[who] is None
        else:
            n_err += 1
            err += p[who] == ref
    return err, n_err, ok, n_ok


def test_the_section_scores_the_judge_and_each_expert_against_the_expert_reference(
    first_error_audit,
):
    audit, plan = first_error_audit
    report = report_build(audit=audit, resamples=200)
    section = report["first_error"]
    assert section["omitted"] is None
    rows = {(r["condition"], r["evaluator"]): r for r in section["rows"]}
    # the judge (first-error mode) against the two experts' consensus
    judge = rows[("(all)", "fe-judge")]
    hits_err, n_err, hits_ok, n_ok = _expected(plan, "judge", ("c1", "c2"))
    assert (judge["hits_erroneous"], judge["n_erroneous"]) == (hits_err, n_err)
    assert (judge["hits_correct"], judge["n_correct"]) == (hits_ok, n_ok)
    a, b = hits_err / n_err, hits_ok / n_ok
    assert judge["f1"] == pytest.approx(2 * a * b / (a + b))
    assert judge["acc_erroneous_low"] < a < judge["acc_erroneous_high"]
    assert judge["mode"] == "first_error" and judge["reference"] == "expert consensus"
    assert judge["f1_interval_method"] == "wilson box"  # fewer than 50 traces per class
    # each expert against the other (step mode until the labels carry their mode)
    c1 = rows[("(all)", "clinician1")]
    assert (c1["hits_erroneous"], c1["n_erroneous"], c1["hits_correct"], c1["n_correct"]) == (
        _expected(plan, "c1", ("c2",))
    )
    assert c1["reference"] == "other experts" and c1["mode"] == "steps"
    # clinician2's unlabelled step makes one trace undefined, counted
    coverage = {c["evaluator"]: c for c in section["coverage"]}
    assert coverage["clinician2"]["n_undefined_gap"] == 1
    assert coverage["clinician1"]["n_defined"] == N_TRACES
    assert c1["n_undefined"] == 0 and rows[("(all)", "clinician2")]["n_undefined"] == 1
    # per condition rows add up to the pooled row
    per_condition = [r for (c, e), r in rows.items() if e == "fe-judge" and c != "(all)"]
    assert sum(r["n"] for r in per_condition) == judge["n"]
    # a sentence per evaluator with the rule beside it; the JSON, the page, the tables
    finding = next(f for f in section["findings"] if f["evaluator"] == "fe-judge")
    assert f"{hits_err} of {n_err} erroneous traces" in finding["sentence"]
    assert finding["rule"].startswith("first-error-v1")
    assert "first_error" in report["methods"]
    context = report_context(report, standalone=False)
    assert [r[1] for r in context["tables"]["first_error"].rows].count("fe-judge") == len(
        per_condition
    ) + 1
    html = report_html(report)
    assert finding["sentence"].replace("'", "&#x27;") in html
    table = report_tables(report)["first_error"]
    assert len(table) == len(section["rows"])
    back = pd.read_parquet(io.BytesIO(frame_to_bytes(table, "parquet")))
    assert back.loc[back["evaluator"] == "fe-judge", "f1"].iloc[0] == pytest.approx(judge["f1"])
    assert "acc_erroneous" in frame_to_bytes(table, "csv").decode()


def test_the_section_is_omitted_with_a_reason_without_first_error_mode(expert_labels):
    report = report_build(audit=expert_labels, resamples=20)
    section = report["first_error"]
    assert section["omitted"] == "no expert or judge labelled in first-error mode"
    assert section["rows"] == [] and report_tables(report)["first_error"].empty
    assert "Not shown: no expert or judge labelled in first-error mode." in report_html(report)


def test_the_section_is_omitted_when_no_trace_has_full_coverage(
    demo_audit, clinician, make_first_error_judge
):
    # given an expert who labelled only the last step of each trace (never a whole prefix)
    from annotations.models.batches import Assignment, AssignmentItem, Batch, BatchItem

    plan = _first_errors(demo_audit)
    batch = Batch.objects.create(audit=demo_audit, name="last", segmentation="given", seed="1")
    lasts = [p["steps"][-1] for p in plan]
    items = BatchItem.objects.bulk_create(
        [BatchItem(batch=batch, step=s, stratum="all", inclusion_probability=1.0) for s in lasts]
    )
    assignment = Assignment.objects.create(batch=batch, annotator=clinician, public_id="l0")
    AssignmentItem.objects.bulk_create(
        [
            AssignmentItem(assignment=assignment, position=i + 1, batch_item=it)
            for i, it in enumerate(items)
        ]
    )
    for i in range(len(items)):
        label_save(
            annotator=clinician, assignment_public_id="l0", position=i + 1, verdict="correct"
        )
    make_first_error_judge(demo_audit, plan)
    # when
    section = report_build(audit=demo_audit, resamples=20)["first_error"]
    # then
    assert section["omitted"].startswith("no trace has full coverage")
