"""Side channels (issue 11), tested as an attacker: a clinician fetching what the labelling page
and the JSON API show, trying to read a step's position, its trace's length, the audit's
hypothesis, or a hidden repeat from where it sits.

The fixture has two arms whose traces differ in length only (a ``long`` arm of 8–14 steps, a
``short`` arm of 3–6), as a reasoning model's traces are longer than a small model's.
"""

import json
import random
import re
from collections import defaultdict
from dataclasses import dataclass

import orjson
import pytest
from sklearn.metrics import roc_auc_score

from annotations.models import Assignment, Audit, Step
from annotations.services.audits import audit_create
from annotations.services.batches import (
    _with_hidden_repeats,
    batch_assign,
    batch_build,
    order_spaced,
    text_key,
)
from annotations.services.imports import import_file

HYPOTHESIS_NAME = "Length audit: reasoning arm writes longer traces"
LONG, SHORT = "long", "short"
QUESTIONS = 24


def _records(seed: int = 5) -> list[dict]:
    rng = random.Random(seed)
    records = []
    for q in range(QUESTIONS):
        for arm, (low, high) in ((LONG, (8, 14)), (SHORT, (3, 6))):
            length = rng.randint(low, high)
            steps = [f"{i + 1}. Finding {i} of case {q} in the {arm} trace." for i in range(length)]
            records.append(
                {
                    "question_id": f"q{q:02d}",
                    "question": f"Case {q}: what is the diagnosis?",
                    "options": {"A": "one", "B": "two"},
                    "gold_answer": "A",
                    "condition": arm,
                    "trace_id": f"{arm}-{q:02d}",
                    "trace": "\n".join(steps),
                    "steps": steps,
                    "final_answer": "A",
                }
            )
    return records


@pytest.fixture
def length_audit(db, tmp_path):
    path = tmp_path / "lengths.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in _records()))
    audit = audit_create(slug="lengths", name=HYPOTHESIS_NAME)
    # Figures reproducible; and the leak gate off: every step names its arm ("in the long
    # trace"), which the gate rightly catches, but this fixture is about position, not text.
    Audit.objects.filter(pk=audit.pk).update(blinding_seed="a" * 64, leak_threshold=1.0)
    audit.refresh_from_db()
    import_file(audit=audit, path=path, segmenter_names=["given"])
    return audit


def _assign_all(audit: Audit, clinician, name: str = "all") -> Assignment:
    size = Step.objects.filter(audit=audit, segmentation="given").count()
    batch = batch_build(audit=audit, name=name, size=size, segmentation="given")
    (assignment,) = batch_assign(batch=batch, annotators=[clinician])
    return assignment


def _positions_by_step(assignment: Assignment) -> dict[tuple[str, int], int]:
    """(trace external id, step index) → position in the clinician's order (the test's key;
    the clinician never sees it)."""
    rows = assignment.items.filter(is_hidden_repeat=False).values_list(
        "batch_item__step__trace__external_id", "batch_item__step__index", "position"
    )
    return {(trace, index): position for trace, index, position in rows}


def _seen(client, assignment: Assignment, position: int) -> tuple[dict, str]:
    base = f"{assignment.public_id}/"
    item = client.get(f"/api/my/assignments/{base}items/{position}/").json()
    page = client.get(f"/my/{base}{position}/").content.decode()
    return item, page


def _visible_text(page: str) -> str:
    """The page as read: tags and the page data dropped, whitespace collapsed."""
    page = re.sub(r"<script.*?</script>", " ", page, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", page).split())


def test_same_deep_position_in_traces_of_different_length_looks_the_same(
    client, length_audit, clinician
):
    # given step 5 (index 4) of a 3-step-longer and a shorter trace, and step 13 of a long one
    lengths = defaultdict(int)
    for trace, index in Step.objects.filter(audit=length_audit).values_list(
        "trace__external_id", "index"
    ):
        lengths[trace] = max(lengths[trace], index + 1)
    short_trace = next(t for t, n in sorted(lengths.items()) if t.startswith(SHORT) and n >= 5)
    long_trace = next(t for t, n in sorted(lengths.items()) if t.startswith(LONG) and n >= 13)
    assignment = _assign_all(length_audit, clinician)
    where = _positions_by_step(assignment)
    client.force_login(clinician)
    # when
    seen = {
        label: _seen(client, assignment, where[key])
        for label, key in {
            "short, step 5": (short_trace, 4),
            "long, step 5": (long_trace, 4),
            "long, step 13": (long_trace, 12),
        }.items()
    }
    # then the same number of context entries, cut, and no number anywhere
    for label, (item, page) in seen.items():
        assert len(item["context"]) == 2, label
        assert item["context_cut"] is True, label
        assert item["step_number"] is None, label
        text = _visible_text(page)
        assert "Preceding steps —" in text, label  # the summary, with no "(N)"
        assert re.search(r"Preceding steps \(\d+\)", text) is None, label
        assert re.search(r"\(step \d+\)", text) is None, label
        assert "earlier steps not shown" in text, label
    shapes = {(tuple(sorted(i)), len(i["context"]), i["context_cut"]) for i, _ in seen.values()}
    assert len(shapes) == 1
    # and the context shown is the two steps right before, in order
    short_item = seen["short, step 5"][0]
    assert [c.split(" of case")[0] for c in short_item["context"]] == ["Finding 2", "Finding 3"]


def test_first_steps_show_what_precedes_them_and_no_ellipsis(client, length_audit, clinician):
    # given
    assignment = _assign_all(length_audit, clinician)
    where = _positions_by_step(assignment)
    client.force_login(clinician)
    # when
    shown = {
        index: _seen(client, assignment, where[("long-00", index)])[0] for index in (0, 1, 2, 3)
    }
    # then what K = 2 reveals: first, second, third or later
    assert [(len(i["context"]), i["context_cut"]) for i in shown.values()] == [
        (0, False),
        (1, False),
        (2, False),
        (2, True),
    ]


def test_step_numbers_and_the_whole_context_only_when_the_audit_asks(
    client, length_audit, clinician
):
    # given
    Audit.objects.filter(pk=length_audit.pk).update(show_step_numbers=True, context_window=None)
    assignment = _assign_all(length_audit, clinician)
    where = _positions_by_step(assignment)
    client.force_login(clinician)
    # when
    item, page = _seen(client, assignment, where[("long-00", 6)])
    # then
    assert item["step_number"] == 7
    assert len(item["context"]) == 6
    assert item["context_cut"] is False
    text = _visible_text(page)
    assert "(step 7)" in text
    assert "Preceding steps (6)" in text


def test_label_records_what_the_window_showed(client, length_audit, clinician):
    # given
    assignment = _assign_all(length_audit, clinician)
    position = _positions_by_step(assignment)[("long-00", 9)]
    client.force_login(clinician)
    # when
    response = client.put(
        f"/api/my/assignments/{assignment.public_id}/items/{position}/label/",
        {"verdict": "correct"},
        content_type="application/json",
    )
    # then
    assert response.status_code == 200
    shown = assignment.items.get(position=position).label.shown
    assert shown["context_steps"] == 2
    assert shown["context_window"] == 2
    assert shown["step_numbers_visible"] is False


def test_clinicians_see_the_annotator_title_never_the_audit_name(client, length_audit, clinician):
    # given
    assignment = _assign_all(length_audit, clinician)
    client.force_login(clinician)
    # when
    bodies = [
        client.get(url).content.decode()
        for url in (
            "/",
            "/my/",
            f"/my/{assignment.public_id}/",
            f"/my/{assignment.public_id}/1/",
            "/api/my/assignments/",
            f"/api/my/assignments/{assignment.public_id}/",
            f"/api/my/assignments/{assignment.public_id}/next/",
        )
    ]
    # then
    titles = {a["title"] for a in client.get("/api/my/assignments/").json()}
    assert titles == {"Step review — assignment 1"}
    for body in bodies:
        assert "Length audit" not in body
        assert "longer traces" not in body
        assert "lengths" not in body.replace("lengths=", "")


def _depth_features(client, assignment: Assignment) -> tuple[list[tuple], list[int]]:
    """What an attacker can read about a step's place from each item, and the step's arm."""
    arms = dict(
        assignment.items.values_list("position", "batch_item__step__trace__condition__name")
    )
    features, labels = [], []
    for position in range(1, assignment.items.count() + 1):
        item = client.get(f"/api/my/assignments/{assignment.public_id}/items/{position}/").json()
        features.append((len(item["context"]), item["context_cut"], item["step_number"]))
        labels.append(int(arms[position] == LONG))
    return features, labels


def _best_auc(features: list[tuple], labels: list[int]) -> float:
    """The attacker's best AUC from these features: score each distinct feature value by the
    share of the long arm among the items that show it (in-sample, so an upper bound)."""
    counts: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for f, y in zip(features, labels, strict=True):
        counts[f][y] += 1
    score = {f: c[1] / (c[0] + c[1]) for f, c in counts.items()}
    return float(roc_auc_score(labels, [score[f] for f in features]))


def test_position_no_longer_predicts_the_longer_arm(client, length_audit, clinician):
    # given every step of both arms in one clinician's assignment
    assignment = _assign_all(length_audit, clinician)
    client.force_login(clinician)
    settings = {
        "numbers and all context": {"show_step_numbers": True, "context_window": None},
        "defaults": {"show_step_numbers": False, "context_window": 2},
        "window of one": {"context_window": 1},
        "step only": {"context_mode": Audit.ContextMode.STEP_ONLY},
    }
    # when the attacker scores each item by what it shows of the step's place
    auc = {}
    for name, values in settings.items():
        Audit.objects.filter(pk=length_audit.pk).update(**values)
        auc[name] = _best_auc(*_depth_features(client, assignment))
    # then (measured, seed fixed: 0.787, 0.709, 0.639, 0.500). What is left under the defaults
    # is not the trace's length but the share of first, second and third steps, which is
    # lower in a long trace: docs/formats.md, "What an annotator sees".
    assert auc["numbers and all context"] >= 0.75
    assert auc["defaults"] <= auc["numbers and all context"] - 0.05
    assert auc["window of one"] < auc["defaults"]
    assert auc["step only"] == 0.5


# --- hidden repeats and identical texts -----------------------------------------------------
@dataclass(eq=False)
class _Item:
    pk: int
    is_gold: bool = False


@pytest.mark.parametrize("n", [15, 40, 200])
def test_hidden_repeats_sit_at_least_m_after_their_original_over_many_seeds(n):
    # given
    gap = 10
    order = [_Item(pk) for pk in range(n)]
    for seed in range(300):
        # when
        slots, spacing = _with_hidden_repeats(order, 0.1, random.Random(seed), gap=gap, keys={})
        # then
        positions = {id(s): i for i, s in enumerate(slots)}
        repeats = [s for s in slots if s.repeat_of is not None]
        assert len(repeats) == round(0.1 * n)
        for r in repeats:
            assert positions[id(r)] - positions[id(r.repeat_of)] >= gap, (n, seed)
        assert spacing["repeats_closer_than_gap"] == []


def test_a_short_assignment_places_repeats_last_and_records_it():
    # given eight items: no original has ten items after it
    order = [_Item(pk) for pk in range(8)]
    # when
    slots, spacing = _with_hidden_repeats(order, 0.25, random.Random(1), gap=10, keys={})
    # then both repeats come last, as far as the assignment allows, and the gaps are recorded
    assert [s.repeat_of is not None for s in slots[-2:]] == [True, True]
    assert len(spacing["repeats_closer_than_gap"]) == 2
    assert all(0 < g < 10 for g in spacing["repeats_closer_than_gap"])


def test_identical_texts_are_kept_m_apart_over_many_seeds():
    # given 60 items of which 8 texts appear three times (different arms, same words)
    gap = 10
    keys = {pk: text_key(f"text {pk}") for pk in range(60)}
    for pk in range(24):
        keys[pk] = text_key(f"The  answer is {pk % 8}.")
    items = [_Item(pk) for pk in range(60)]
    for seed in range(300):
        order = list(items)
        random.Random(seed).shuffle(order)
        # when
        spaced = order_spaced(order, keys=keys, gap=gap)
        # then a permutation, identical texts at least ten apart
        assert sorted(i.pk for i in spaced) == list(range(60))
        last: dict[str, int] = {}
        for position, item in enumerate(spaced):
            key = keys[item.pk]
            assert key not in last or position - last[key] >= gap, seed
            last[key] = position
        # and reproducible: the same shuffle gives the same order
        assert order_spaced(order, keys=keys, gap=gap) == spaced


def test_spacing_leaves_an_order_without_clashes_alone():
    order = [_Item(pk) for pk in range(30)]
    keys = {i.pk: f"t{i.pk}" for i in order}
    assert order_spaced(order, keys=keys, gap=10) == order


def test_assignments_keep_identical_steps_and_repeats_apart(demo_audit, clinician, other_clinician):
    # given the demo's steps, many of which say the same thing in every arm
    texts = dict(
        Step.objects.filter(audit=demo_audit, segmentation="given").values_list(
            "pk", "blinded_text"
        )
    )
    counts = defaultdict(int)
    for text in texts.values():
        counts[text_key(text)] += 1
    assert max(counts.values()) >= 3  # the fixture does repeat itself
    for seed in range(4):
        batch = batch_build(
            audit=demo_audit,
            name=f"spaced {seed}",
            size=60,
            segmentation="given",
            overlap=2,
            include_batched=True,
            hidden_repeat_share=0.1,
        )
        # when
        assignments = batch_assign(batch=batch, annotators=[clinician, other_clinician])
        # then
        for assignment in assignments:
            rows = list(
                assignment.items.order_by("position").values_list(
                    "position", "batch_item__step_id", "repeat_of__position"
                )
            )
            last: dict[str, int] = {}
            for position, step_id, original in rows:
                key = text_key(texts[step_id])
                assert key not in last or position - last[key] >= 10, (seed, position)
                last[key] = position
                if original is not None:
                    assert position - original >= 10
        batch.refresh_from_db()
        assert batch.design["repeat_min_gap"] == 10
        spacing = batch.design["spacing"]
        assert set(spacing) == {a.public_id for a in assignments}
        assert all(s["identical_texts_closer_than_gap"] == 0 for s in spacing.values())


def test_admin_shows_the_side_channel_settings(client, admin_user, length_audit):
    # given
    client.force_login(admin_user)
    # when
    page = client.get(f"/admin/annotations/audit/{length_audit.pk}/change/").content.decode()
    # then
    for field in ("show_step_numbers", "context_window", "annotator_title", "repeat_min_gap"):
        assert f'name="{field}"' in page, field
    assert json.dumps("Step review")[1:-1] in page


# --- in the browser: the page drawn by label_page.js after "save & next" --------------------
@pytest.mark.browser
@pytest.mark.slow
def test_items_shown_in_place_carry_no_counts(page, length_audit, clinician):
    # given a clinician on the first item of every step of both arms
    assignment = _assign_all(length_audit, clinician)
    page.goto("/accounts/login/")
    page.locator("#id_username").fill(clinician.username)
    page.locator("#id_password").fill(clinician.raw_password)
    page.locator("#id_password").press("Enter")
    page.wait_for_url(re.compile(r"/my/$"))
    page.goto(f"/my/{assignment.public_id}/1/")
    cut_seen = set()
    for position in range(1, 16):
        # when the script draws item `position` (in place from the second on)
        page.wait_for_url(f"**/my/{assignment.public_id}/{position}/")
        shown = page.evaluate(
            """() => ({
                title: document.getElementById("step-title").textContent,
                summary: document.querySelector("details.context summary").textContent,
                cut: !document.getElementById("context-cut").hidden,
                steps: document.querySelectorAll("#context-steps li").length,
            })"""
        )
        # then no step number, no count, at most two preceding steps, "…" when cut
        assert re.search(r"\d", shown["title"] + shown["summary"]) is None, shown
        assert shown["steps"] <= 2
        assert not shown["cut"] or shown["steps"] == 2
        cut_seen.add(shown["cut"])
        page.keyboard.press("1")
        page.keyboard.press("Enter")
    assert cut_seen == {True, False}
    assert page.errors == []


def test_a_depth_balanced_sample_leaves_the_attacker_at_chance(client, length_audit, clinician):
    # given a batch that gives both arms the same mix of first, second, third and later steps
    batch = batch_build(
        audit=length_audit,
        name="balanced",
        size=120,
        segmentation="given",
        stratify_by=["context_depth"],
        allocation="balanced",
    )
    (assignment,) = batch_assign(batch=batch, annotators=[clinician])
    client.force_login(clinician)
    # when
    features, labels = _depth_features(client, assignment)
    # then the same mix in both arms, and nothing to score
    by_arm = defaultdict(lambda: defaultdict(int))
    for f, y in zip(features, labels, strict=True):
        by_arm[y][f] += 1
    assert by_arm[0] == by_arm[1]
    assert set(by_arm[0]) == {(0, False, None), (1, False, None), (2, False, None), (2, True, None)}
    assert _best_auc(features, labels) == 0.5
    # and the strata name the depth classes the defaults show
    cells = {s["key"].split(" | ", 1)[1] for s in batch.design["strata"]}
    assert cells == {f"context_depth={d}" for d in ("1", "2", "3", "4+")}


def test_depth_classes_follow_the_audit_settings(length_audit):
    from annotations.services.batches import context_depth

    length_audit.context_window = 2
    assert [context_depth(length_audit, i) for i in range(5)] == ["1", "2", "3", "4+", "4+"]
    length_audit.show_step_numbers = True
    assert context_depth(length_audit, 9) == "10"
    length_audit.show_step_numbers = False
    length_audit.context_mode = Audit.ContextMode.STEP_ONLY
    assert context_depth(length_audit, 9) == "any"


def test_create_batch_samples_by_depth_from_the_command_line(length_audit, clinician):
    from io import StringIO

    from django.core.management import call_command

    from annotations.models import Batch

    # when
    out = StringIO()
    call_command(
        "create_batch",
        "--audit",
        "lengths",
        "--size",
        "40",
        "--segmentation",
        "given",
        "--name",
        "by depth",
        "--stratify-by-depth",
        "--allocation",
        "balanced",
        stdout=out,
    )
    # then
    assert "context_depth=4+" in out.getvalue()
    design = Batch.objects.get(name="by depth").design
    assert design["allocation"] == "balanced"
    sizes = defaultdict(dict)
    for s in design["strata"]:
        arm, cell = s["key"].split(" | ", 1)
        sizes[cell][arm] = s["sample"]
    assert all(len(set(by_arm.values())) == 1 for by_arm in sizes.values())
