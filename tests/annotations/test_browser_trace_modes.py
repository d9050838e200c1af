"""The trace modes in Debian's chromium, keyboard only (issue 13): trace mode labels every
step of a trace in order, first-error mode marks the first wrong step (or none); both save
through the page's outbox, ride out a short offline spell, and pass axe-core."""

import re
import time

import pytest
from axe import assert_no_serious_axe_violations
from browsing import tab_to

from annotations.models import FirstErrorMark, FirstErrorMarkRevision, Label, LabelRevision

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _login(page, user) -> None:
    page.goto("/accounts/login/")
    page.locator("#id_username").press_sequentially(user.username)
    page.keyboard.press("Tab")
    page.keyboard.type(user.raw_password)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/my/$"))


def _assign(audit, clinician, *, mode: str, size: int):
    from annotations.services.batches import batch_assign, batch_build

    batch = batch_build(audit=audit, name=f"b-{mode}", size=size, segmentation="given", mode=mode)
    (assignment,) = batch_assign(batch=batch, annotators=[clinician])
    return assignment


def _settled(page) -> None:
    page.locator("#sync[hidden]").wait_for(state="attached")
    page.locator("#status", has_text=re.compile(r"^Saved ✓$")).wait_for()


def _trace_positions(assignment) -> list[list[int]]:
    rows = assignment.items.order_by("position").values_list(
        "position", "batch_item__step__trace_id"
    )
    traces: dict[int, list[int]] = {}
    for position, trace_id in rows:
        traces.setdefault(trace_id, []).append(position)
    return list(traces.values())


def _verdicts(assignment) -> dict[int, tuple[str, str]]:
    return {
        label.assignment_item.position: (label.verdict, label.error_category)
        for label in Label.objects.select_related("assignment_item").filter(assignment=assignment)
    }


def test_trace_mode_by_keyboard(page, demo_audit, clinician):
    # given a trace-mode assignment of two traces
    assignment = _assign(demo_audit, clinician, mode="trace", size=2)
    pid = assignment.public_id
    first, second = _trace_positions(assignment)
    category = demo_audit.error_categories[1]
    _login(page, clinician)
    # the assignment opens on its first trace's page
    page.goto(f"/my/{pid}/")
    page.wait_for_url(f"**/my/{pid}/trace/1/")
    assert page.locator(".trace-step").count() == len(first)
    # no step numbers (the audit does not show them), no condition
    assert "Step 1" not in page.locator("#trace-steps").inner_text()
    assert_no_serious_axe_violations(page)
    # when they press correct, error + its kind, abstain, then correct for the rest
    pressed = {first[0]: ("correct", ""), first[1]: ("error", category)}
    page.keyboard.press("1")
    page.keyboard.press("2")
    page.locator("#category-box:not([hidden])").wait_for()
    assert_no_serious_axe_violations(page)  # with the kinds of error open
    page.keyboard.press("2")  # the second kind
    for position in first[2:]:
        key = "3" if position == first[2] else "c"
        page.keyboard.press(key)
        pressed[position] = ("abstain", "") if key == "3" else ("correct", "")
    _settled(page)
    # then each step was saved as it was labelled: one label, one revision each
    assert _verdicts(assignment) == pressed
    assert all(
        label.revision == 1 and label.shown["mode"] == "trace"
        for label in Label.objects.filter(assignment=assignment)
    )
    assert LabelRevision.objects.filter(label__assignment=assignment).count() == len(first)
    assert page.locator("#done-text").text_content() == "1 of 2 traces done"
    # revising a step: ↑ to the last one, abstain → a second revision of that step only
    page.keyboard.press("ArrowUp")
    page.keyboard.press("a")
    _settled(page)
    pressed[first[-2]] = ("abstain", "")
    assert _verdicts(assignment) == pressed
    # → goes to the next trace once everything is saved; the same keys label it
    page.keyboard.press("ArrowRight")
    page.wait_for_url(f"**/my/{pid}/trace/2/")
    for position in second:
        page.keyboard.press("1")
        pressed[position] = ("correct", "")
    _settled(page)
    assert _verdicts(assignment) == pressed
    # the submit box asks first; Enter alone never submits
    page.locator("#submit-box:not([hidden])").wait_for()
    page.keyboard.press("Enter")
    page.wait_for_timeout(300)
    assert page.locator("#submit-dialog[open]").count() == 0
    tab_to(page, "Submit assignment…")
    page.keyboard.press("Enter")
    page.locator("#submit-dialog[open]").wait_for()
    assert "2 of 2 traces done" in page.locator("#submit-counts").text_content()
    assert_no_serious_axe_violations(page)
    assert page.evaluate("() => document.activeElement.id") == "submit-cancel"
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/my/$"))
    assignment.refresh_from_db()
    assert assignment.is_locked
    # the submitted trace page: disabled controls, no serious axe findings
    page.goto(f"/my/{pid}/trace/1/")
    assert page.locator(".verdict:disabled").count() == 3 * len(first)
    assert_no_serious_axe_violations(page)
    assert page.errors == []


def test_first_error_mode_by_keyboard(page, demo_audit, clinician):
    # given a first-error assignment of two traces
    assignment = _assign(demo_audit, clinician, mode="first_error", size=2)
    pid = assignment.public_id
    first, second = _trace_positions(assignment)
    _login(page, clinician)
    page.goto(f"/my/{pid}/1/")  # a step's address opens its trace
    page.wait_for_url(f"**/my/{pid}/trace/1/")
    assert_no_serious_axe_violations(page)
    # when they move down two steps and mark the third as the first wrong one, kind 1
    page.keyboard.press("ArrowDown")
    page.keyboard.press("j")
    page.keyboard.press("Enter")
    page.locator("#category-box:not([hidden])").wait_for()
    page.keyboard.press("1")
    _settled(page)
    # then the stored labels read as the mark: correct, correct, error, then nothing
    category = demo_audit.error_categories[0]
    expected = {first[0]: ("correct", ""), first[1]: ("correct", ""), first[2]: ("error", category)}
    assert _verdicts(assignment) == expected
    mark = FirstErrorMark.objects.get(assignment=assignment)
    assert mark.error_category == category and mark.first_error_item.position == first[2]
    assert page.locator("#done-text").text_content() == "1 of 2 traces done"
    # re-marking: step 1 is the first wrong one (e); steps 2-3 lose their labels
    page.keyboard.press("k")
    page.keyboard.press("k")
    page.keyboard.press("e")
    page.keyboard.press("Escape")  # no kind of error
    _settled(page)
    assert _verdicts(assignment) == {first[0]: ("error", "")}
    assert FirstErrorMarkRevision.objects.filter(mark=mark).count() >= 2
    assert_no_serious_axe_violations(page)
    # the next trace: "no error" with 0
    page.keyboard.press("n")
    page.wait_for_url(f"**/my/{pid}/trace/2/")
    page.keyboard.press("0")
    _settled(page)
    labels = _verdicts(assignment)
    assert all(labels[p] == ("correct", "") for p in second)
    assert page.locator("#done-text").text_content() == "2 of 2 traces done"
    page.locator("#submit-box:not([hidden])").wait_for()
    # the key help lists the keys of this mode
    page.keyboard.press("?")
    page.locator("#help-dialog[open]").wait_for()
    assert "No error in this trace" in page.locator("#help-dialog").inner_text()
    assert_no_serious_axe_violations(page)
    page.keyboard.press("Escape")
    assert page.errors == []


def test_cannot_assess_a_trace_by_key_and_by_click(page, demo_audit, clinician):
    # given a first-error assignment of two traces
    assignment = _assign(demo_audit, clinician, mode="first_error", size=2)
    pid = assignment.public_id
    first, second = _trace_positions(assignment)
    _login(page, clinician)
    page.goto(f"/my/{pid}/trace/1/")
    # when the expert presses "a" on a trace they cannot judge
    page.keyboard.press("a")
    _settled(page)
    # then every step abstains, the page says so, and the trace counts as done
    assert _verdicts(assignment) == {p: ("abstain", "") for p in first}
    assert FirstErrorMark.objects.get(assignment=assignment).cannot_assess
    button = page.locator("#cannot-assess-button")
    assert button.get_attribute("aria-pressed") == "true"
    assert "can't assess" in page.locator("#cannot-assess-state").text_content()
    assert page.locator("#done-text").text_content() == "1 of 2 traces done"
    assert_no_serious_axe_violations(page)
    # and after a reload it still reads so; "no error" (0) then replaces it
    page.reload()
    assert page.locator("#cannot-assess-button").get_attribute("aria-pressed") == "true"
    page.keyboard.press("0")
    _settled(page)
    assert page.locator("#cannot-assess-button").get_attribute("aria-pressed") == "false"
    assert _verdicts(assignment) == {p: ("correct", "") for p in first}
    # the next trace, by a click on the button
    page.keyboard.press("n")
    page.wait_for_url(f"**/my/{pid}/trace/2/")
    page.locator("#cannot-assess-button").click()
    _settled(page)
    labels = _verdicts(assignment)
    assert all(labels[p] == ("abstain", "") for p in second)
    assert page.locator("#done-text").text_content() == "2 of 2 traces done"
    page.keyboard.press("?")
    assert "can't assess this trace" in page.locator("#help-dialog").inner_text()
    assert page.errors == []


def test_trace_mode_offline_loses_nothing_and_doubles_nothing(page, demo_audit, clinician):
    # given a clinician on a trace-mode page
    assignment = _assign(demo_audit, clinician, mode="trace", size=1)
    pid = assignment.public_id
    (steps,) = _trace_positions(assignment)
    _login(page, clinician)
    page.goto(f"/my/{pid}/trace/1/")
    page.keyboard.press("1")
    _settled(page)
    # when the network goes away for 10 s while they label the rest
    page.context.set_offline(True)
    offline_at = time.monotonic()
    for _ in steps[1:]:
        page.keyboard.press("3")
    page.get_by_text("Not saved yet").wait_for()
    assert Label.objects.filter(assignment=assignment).count() == 1
    time.sleep(max(0.0, 10 - (time.monotonic() - offline_at)))
    page.context.set_offline(False)
    _settled(page)
    # then every step holds what was pressed, once
    expected = {steps[0]: ("correct", "")} | {p: ("abstain", "") for p in steps[1:]}
    assert _verdicts(assignment) == expected
    assert LabelRevision.objects.filter(label__assignment=assignment).count() == len(steps)
    assert page.errors == []
