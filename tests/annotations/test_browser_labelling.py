"""The labelling loop in a real browser (Debian's chromium through Playwright), keyboard only."""

import re

import pytest
from axe import assert_no_serious_axe_violations
from browsing import submit_by_keyboard

from annotations.models import Assignment, Label, TraceRating

pytestmark = [pytest.mark.browser, pytest.mark.slow]
# Django's async guard is lifted for this test's own ORM reads by the `browser` fixture.


def _login(page, user) -> None:
    page.goto("/accounts/login/")
    page.locator("#id_username").press_sequentially(user.username)
    page.keyboard.press("Tab")
    page.keyboard.type(user.raw_password)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/my/$"))


def _tab_to(page, text: str, limit: int = 30) -> None:
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent.trim()") == text:
            return
    raise AssertionError(f"no focusable {text!r}")


def _wait_position(page, public_id: str, position: int) -> None:
    page.wait_for_url(f"**/my/{public_id}/{position}/")
    page.wait_for_load_state("load")


@pytest.fixture
def one_assignment(demo_audit, clinician):
    from annotations.services.batches import batch_assign, batch_build
    from annotations.services.demo import DEMO_GUIDELINES

    demo_audit.guidelines = DEMO_GUIDELINES
    demo_audit.save(update_fields=["guidelines"])
    batch = batch_build(audit=demo_audit, name="browser", size=12, segmentation="given")
    (assignment,) = batch_assign(batch=batch, annotators=[clinician])
    return assignment


def test_clinician_labels_by_keyboard_resumes_revises_and_submits(
    page, one_assignment, clinician, artifacts_dir
):
    pid = one_assignment.public_id
    # given a signed-in clinician on "my assignments"
    _login(page, clinician)
    assert page.get_by_role("progressbar").first.get_attribute("aria-valuenow") == "0"
    # when they start by keyboard and label ten steps
    _tab_to(page, "Start")
    page.keyboard.press("Enter")
    _wait_position(page, pid, 1)
    keys = ["1", "2", "3", "c", "e", "a", "1", "1", "2", "3"]
    # "save & next" shows the next item in place, from the save's own answer
    page.evaluate("window.sameDocument = true")
    requests: list[tuple[str, str]] = []
    page.on("request", lambda request: requests.append((request.method, request.url)))
    for position, key in enumerate(keys, start=1):
        page.keyboard.press(key)
        if key in ("2", "e"):
            # focus is on the categories: arrow to the second one, then save and go on
            page.keyboard.press("ArrowDown")
            page.get_by_text("Saved ✓").wait_for()
        if position == 2:
            page.keyboard.press("m")
            page.keyboard.type("The dose is wrong.")
            page.keyboard.press("Escape")
            page.screenshot(path=str(artifacts_dir / "labelling.png"), full_page=True)
        page.keyboard.press("Enter")
        _wait_position(page, pid, position + 1)
    # then that took no page load and no request but the label saves, one per item with Enter
    assert page.evaluate("window.sameDocument") is True
    assert {(method, url.split("/items/")[1].split("?")[0][-6:]) for method, url in requests} == {
        ("PUT", "label/")
    }
    assert sum("?next=unlabelled" in url for _, url in requests) == 10
    # then ten labels are stored, with categories for the errors and time on task
    labels = {
        lab.assignment_item.position: lab
        for lab in Label.objects.select_related("assignment_item").filter(assignment=one_assignment)
    }
    assert sorted(labels) == list(range(1, 11))
    assert [labels[p].verdict for p in range(1, 11)] == [
        "correct",
        "error",
        "abstain",
        "correct",
        "error",
        "abstain",
        "correct",
        "correct",
        "error",
        "abstain",
    ]
    assert labels[2].error_category and labels[2].comment == "The dose is wrong."
    assert all(lab.elapsed_ms > 0 for lab in labels.values())

    # when they reload, and come back through "my assignments"
    page.reload()
    _wait_position(page, pid, 11)
    page.goto("/my/")
    _tab_to(page, "Continue")
    page.keyboard.press("Enter")
    # then they resume at the first unlabelled item
    _wait_position(page, pid, 11)

    # when they go back and revise item 10 (abstain → correct)
    page.keyboard.press("p")
    _wait_position(page, pid, 10)
    assert page.locator('[data-verdict="abstain"]').get_attribute("aria-checked") == "true"
    page.keyboard.press("1")
    page.get_by_text("Saved ✓").wait_for()
    revised = Label.objects.get(assignment=one_assignment, assignment_item__position=10)
    assert (revised.verdict, revised.revision) == ("correct", 2)
    assert revised.revisions.count() == 2

    # the guidelines are a key press away
    page.keyboard.press("g")
    page.locator("#guidelines-dialog[open]").wait_for()
    page.keyboard.press("Escape")
    # when they jump through the overview to item 11 and finish the last two
    page.keyboard.press("o")
    page.locator("#overview-dialog[open]").wait_for()
    page.keyboard.press("Tab")  # from item 10 to item 11
    page.keyboard.press("Enter")
    _wait_position(page, pid, 11)
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    _wait_position(page, pid, 12)
    page.keyboard.press("3")
    page.keyboard.press("Enter")
    # then the submit box appears, but neither takes the focus nor submits on Enter
    page.locator("#submit-box:not([hidden])").wait_for()
    submit_by_keyboard(page, labelled=12, skipped=0, flagged=0)
    assert page.get_by_text("Submitted").is_visible()
    one_assignment.refresh_from_db()
    assert one_assignment.submitted_at is not None
    assert Label.objects.filter(assignment=one_assignment).count() == 12
    assert page.errors == [] and page.csp_violations == []


def test_participant_rates_traces_by_keyboard(page, rating_assigned, clinician, artifacts_dir):
    mine, _ = rating_assigned
    pid = mine.public_id
    total = mine.items.count()
    # given
    _login(page, clinician)
    page.goto(f"/my/{pid}/")
    _wait_position(page, pid, 1)
    # when every trace gets two answers by number keys and Enter
    for position in range(1, total + 1):
        page.keyboard.press(str(1 + position % 5))
        page.keyboard.press("2")
        if position == 1:
            page.get_by_text("Saved ✓").wait_for()
            page.screenshot(path=str(artifacts_dir / "rating.png"), full_page=True)
            assert_no_serious_axe_violations(page)
        page.keyboard.press("Enter")
        if position < total:
            _wait_position(page, pid, position + 1)
        if position == 3:
            # a reload in the middle loses nothing
            page.reload()
            _wait_position(page, pid, 4)
    page.locator("#submit-box:not([hidden])").wait_for()
    submit_by_keyboard(page, labelled=total, skipped=0, flagged=0)
    # then
    ratings = TraceRating.objects.filter(assignment=mine)
    assert ratings.count() == total
    assert all(r.answers["cognitive_load"] == 2 for r in ratings)
    assert Assignment.objects.get(pk=mine.pk).submitted_at is not None
    assert page.errors == [] and page.csp_violations == []
