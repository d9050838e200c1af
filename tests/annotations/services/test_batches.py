from collections import Counter
from itertools import pairwise

import pytest

from annotations.models import AssignmentItem, BatchItem, Step
from annotations.services.batches import (
    assignment_reassign,
    batch_assign,
    batch_build,
    batch_preview,
    williams_square,
)
from annotations.services.labels import label_save
from annotations.services.sampling import largest_remainder
from auditapp.exceptions import ApplicationError, ConflictError


def _conditions(batch):
    return Counter(
        BatchItem.objects.filter(batch=batch, is_gold=False).values_list(
            "step__trace__condition__name", flat=True
        )
    )


def test_batch_build_stratifies_equally_by_condition(demo_audit, admin_user):
    # when
    batch = batch_build(audit=demo_audit, name="b", size=30, segmentation="given")
    # then
    assert _conditions(batch) == {"teacher": 10, "student-before": 10, "student-after": 10}
    assert {s["sample"] for s in batch.design["strata"]} == {10}


def test_batch_build_is_reproducible_from_seed(demo_audit):
    # given
    first = batch_build(audit=demo_audit, name="a", size=20, segmentation="given", seed="s1")
    # when
    again = batch_preview(
        audit=demo_audit, size=20, segmentation="given", seed="s1", include_batched=True
    )
    other = batch_preview(
        audit=demo_audit, size=20, segmentation="given", seed="s2", include_batched=True
    )
    # then
    drawn = set(first.items.values_list("step_id", flat=True))
    assert {pk for pks in again.drawn.values() for pk in pks} == drawn
    assert {pk for pks in other.drawn.values() for pk in pks} != drawn


def test_inclusion_probabilities_are_n_over_population(demo_audit):
    # when
    batch = batch_build(
        audit=demo_audit, name="b", size=30, segmentation="given", stratify_by=["answer_correct"]
    )
    # then every item carries n_h / N_h of its stratum, and 1/π over the sample adds up to
    # the population (Horvitz–Thompson)
    strata = {s["key"]: s for s in batch.design["strata"]}
    for item in batch.items.all():
        stratum = strata[item.stratum]
        assert item.inclusion_probability == pytest.approx(
            stratum["sample"] / stratum["population"]
        )
    population = Step.objects.filter(audit=demo_audit, segmentation="given").count()
    weights = sum(1 / i.inclusion_probability for i in batch.items.all() if i.inclusion_probability)
    sampled_strata_population = sum(s["population"] for s in strata.values() if s["sample"])
    assert weights == pytest.approx(sampled_strata_population)
    assert sum(s["population"] for s in strata.values()) == population
    assert sum(s["sample"] for s in strata.values()) == 30


def test_stratify_by_answer_correctness_covers_wrong_answers(demo_audit):
    # when
    plan = batch_preview(
        audit=demo_audit, size=60, segmentation="given", stratify_by=["answer_correct"]
    )
    # then six strata (3 conditions × right/wrong), each condition 20
    assert len(plan.strata) == 6
    per_condition = Counter()
    for s in plan.strata:
        per_condition[s.condition] += s.sample
        assert s.sample <= s.population
    assert set(per_condition.values()) == {20}
    assert all(s.sample > 0 for s in plan.strata)


def test_pluggable_stratum_function_for_judge_verdicts(demo_audit):
    # given a stand-in for a judge run's verdicts
    def judge_verdict(step_ids):
        return {pk: ("error" if pk % 4 == 0 else "correct") for pk in step_ids}

    # when
    plan = batch_preview(
        audit=demo_audit,
        size=30,
        segmentation="given",
        stratify_by=["judge"],
        stratum_functions={"judge": judge_verdict},
    )
    # then
    assert {s.key.split(" | ")[1] for s in plan.strata} == {"judge=error", "judge=correct"}
    assert plan.sample_size == 30


def test_batch_excludes_steps_already_batched_unless_asked(demo_audit):
    # given
    first = batch_build(audit=demo_audit, name="a", size=60, segmentation="given")
    taken = set(first.items.values_list("step_id", flat=True))
    # when
    second = batch_build(audit=demo_audit, name="b", size=60, segmentation="given")
    third = batch_build(
        audit=demo_audit, name="c", size=60, segmentation="given", include_batched=True, seed="x"
    )
    # then
    assert taken.isdisjoint(second.items.values_list("step_id", flat=True))
    assert second.design["excluded_already_batched"] == 60
    assert not taken.isdisjoint(third.items.values_list("step_id", flat=True))


def test_gold_items_carry_the_reference_verdict(demo_audit):
    # when
    batch = batch_build(audit=demo_audit, name="g", size=12, segmentation="given", gold=3)
    # then
    gold = list(batch.items.filter(is_gold=True).select_related("step"))
    assert len(gold) == 3
    assert all(g.gold_verdict == g.step.reference_verdict for g in gold)
    assert all(g.inclusion_probability is None for g in gold)


def test_overlap_gives_each_step_to_k_annotators_with_balanced_load(
    demo_audit, clinician, other_clinician, researcher
):
    # given
    batch = batch_build(audit=demo_audit, name="o", size=30, segmentation="given", overlap=2)
    # when
    assignments = batch_assign(batch=batch, annotators=[clinician, other_clinician, researcher])
    # then
    per_item = Counter(
        AssignmentItem.objects.filter(assignment__batch=batch).values_list(
            "batch_item_id", flat=True
        )
    )
    assert set(per_item.values()) == {2}
    assert len(per_item) == 30
    assert sorted(a.items.count() for a in assignments) == [20, 20, 20]


def test_orders_are_independent_per_annotator(assigned):
    # given
    mine, theirs = assigned
    # then the same items, in different orders
    order = lambda a: list(a.items.order_by("position").values_list("batch_item_id", flat=True))  # noqa: E731
    assert sorted(order(mine)) == sorted(order(theirs))
    assert order(mine) != order(theirs)
    assert [i.position for i in mine.items.order_by("position")] == list(range(1, 25))


def test_hidden_repeats_come_later_and_point_to_their_original(
    demo_audit, clinician, other_clinician
):
    # given
    batch = batch_build(
        audit=demo_audit, name="h", size=40, segmentation="given", hidden_repeat_share=0.1
    )
    # when
    (mine,) = batch_assign(batch=batch, annotators=[clinician])
    # then
    repeats = list(mine.items.filter(is_hidden_repeat=True).select_related("repeat_of"))
    assert len(repeats) == 4
    assert mine.items.count() == 44
    for r in repeats:
        assert r.batch_item_id == r.repeat_of.batch_item_id
        assert r.position > r.repeat_of.position


def test_overlap_needs_enough_annotators(step_batch, clinician):
    # when / then
    with pytest.raises(ApplicationError) as exc:
        batch_assign(batch=step_batch, annotators=[clinician])
    assert exc.value.code == "overlap"


def test_assigning_twice_is_refused(assigned, step_batch, clinician, other_clinician):
    with pytest.raises(ConflictError):
        batch_assign(batch=step_batch, annotators=[clinician, other_clinician])


def test_reassign_moves_unfinished_work_and_keeps_labels(assigned, researcher, clinician):
    # given three labels by the first clinician
    mine, _ = assigned
    for position in (1, 2, 3):
        label_save(
            annotator=clinician,
            assignment_public_id=mine.public_id,
            position=position,
            verdict="correct",
        )
    # when
    new = assignment_reassign(assignment=mine, to_annotator=researcher)
    # then
    assert mine.items.count() == 3
    assert mine.labels.count() == 3
    assert new.items.count() == 21
    assert [i.position for i in new.items.order_by("position")] == list(range(1, 22))
    assert new.reassigned_from_id == mine.pk


def test_williams_square_is_latin_and_balances_carryover():
    for t in (2, 3, 4, 5):
        rows = williams_square(t)
        for row in rows:
            assert sorted(row) == list(range(t))
        for column in zip(*rows, strict=True):
            assert Counter(column) == dict.fromkeys(range(t), len(rows) // t)
        follows = Counter((a, b) for row in rows for a, b in pairwise(row))
        assert len(set(follows.values())) == 1


def test_trace_rating_assignment_is_counterbalanced(rating_assigned):
    # given two participants rating 12 traces of three types (overlap 2: all 12 each)
    for assignment in rating_assigned:
        types = list(
            assignment.items.order_by("position").values_list(
                "batch_item__trace__trace_type", flat=True
            )
        )
        # then each type equally often, and each block of three holds every type once
        assert set(Counter(types).values()) == {4}
        for start in range(0, 12, 3):
            assert len(set(types[start : start + 3])) == 3
    first, second = (
        list(a.items.order_by("position").values_list("batch_item__trace__trace_type", flat=True))
        for a in rating_assigned
    )
    assert first[:3] != second[:3]  # different rows of the square


def test_largest_remainder_respects_caps_and_total():
    assert largest_remainder({"a": 1, "b": 1}, 5, {"a": 1, "b": 10}) == {"a": 1, "b": 4}
    assert largest_remainder({"a": 1, "b": 1}, 50, {"a": 1, "b": 10}) == {"a": 1, "b": 10}
