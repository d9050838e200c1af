"""A participant enrols through a study link in a real browser (Debian's chromium through
Playwright): consent, practice with feedback, the items with an attention check, the
questionnaire, the completion code; then an admin finds them on the study page."""

import re

import pytest
from axe import assert_no_serious_axe_violations
from browsing import sign_in
from study_data import CHECK_TEXT, COMPLETION_CODE, CONSENT, make_batch

from studies.models import Participant

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def small_link(study, study_audit, admin_user):
    """The study on a batch of four traces (one of each type): four items and the check."""
    from studies.services.setup import study_link_create

    batch = make_batch(study_audit, name="four", per_type=1)
    return study_link_create(
        audit=study_audit, batch=batch, capacity=5, completion_code=COMPLETION_CODE
    )


def _rate(page, first: str, second: str) -> None:
    page.get_by_role("group", name="How easy is this to follow?").get_by_text(
        first, exact=True
    ).click()
    page.get_by_role("group", name="How much effort did it take?").get_by_text(
        second, exact=True
    ).click()


def test_a_participant_enrols_through_the_link_and_the_admin_sees_them(
    page, small_link, admin_user, artifacts_dir
):
    # given a visitor sent by the platform
    page.goto(f"/s/{small_link.token}/?PROLIFIC_PID=browser01")
    page.get_by_text(CONSENT).wait_for()
    assert_no_serious_axe_violations(page)
    # when they agree and read the instructions
    page.get_by_role("button", name="I agree to take part").click()
    page.get_by_role("heading", name="Instructions").wait_for()
    page.get_by_role("button", name="Start the practice").click()
    # then a practice item, and feedback on their answer
    page.get_by_role("heading", name="Practice 1 of 1").wait_for()
    _rate(page, "2", "3")
    page.get_by_role("button", name="Check my answer").click()
    page.get_by_role("status").get_by_text("Not quite").wait_for()
    assert "expected 5, you chose 2" in page.get_by_role("status").inner_text()
    assert_no_serious_axe_violations(page)
    page.screenshot(path=str(artifacts_dir / "study-practice-feedback.png"), full_page=True)
    page.get_by_role("link", name="Continue").click()
    # when they rate the four traces; the attention check, at its set place 5, looks like any
    # other item
    for number in range(1, 6):
        page.get_by_role("heading", name=f"Item {number} of 5").wait_for()
        if CHECK_TEXT in page.content():
            assert number == 5
            assert_no_serious_axe_violations(page)
            _rate(page, "5", "1")
        else:
            _rate(page, "4", "2")
        page.get_by_role("button", name="Save and continue").click()
    # then the questionnaire, and the completion code
    page.get_by_role("heading", name="A few last questions").wait_for()
    page.get_by_text("30+", exact=True).click()
    page.get_by_role("button", name="Finish").click()
    page.locator("#completion-code").wait_for()
    assert page.locator("#completion-code").inner_text() == COMPLETION_CODE
    assert_no_serious_axe_violations(page)
    page.screenshot(path=str(artifacts_dir / "study-completed.png"), full_page=True)
    participant = Participant.objects.get(platform_id="browser01")
    assert participant.completed_at is not None and participant.excluded_at is None
    assert participant.assignment.ratings.count() == 4
    assert page.errors == []

    # when an admin opens the study page in a new session
    admin = page.context.browser.new_context(base_url=page.url.split("/s/")[0])
    admin_page = admin.new_page()
    sign_in(admin_page, admin_user)
    admin_page.goto(f"/studies/{small_link.study.audit.slug}/")
    # then the participant is listed as completed, with the attention check passed
    row = admin_page.locator("#participants tr", has_text="browser01")
    row.wait_for()
    assert "completed" in row.inner_text() and "5:pass" in row.inner_text()
    assert admin_page.locator("#n-completed").inner_text() == "1"
    assert_no_serious_axe_violations(admin_page)
    admin_page.screenshot(path=str(artifacts_dir / "study-page.png"), full_page=True)
    admin.close()


STEP_CONSENT = "You will judge single reasoning steps. Taking part is voluntary."


@pytest.fixture
def step_link(demo_audit, admin_user):
    """A step-label study: one practice step, checks at places 2 and 4 (the batch's gold)."""
    from annotations.services.batches import batch_build
    from studies.services.setup import study_configure, study_link_create

    batch = batch_build(
        audit=demo_audit, name="browser-steps", size=3, segmentation="given", gold=2
    )
    study_configure(
        audit=demo_audit,
        settings={
            "consent": STEP_CONSENT,
            "instructions": "Judge each step on its own terms.",
            "practice": [
                {"text": "Two and two make five.", "verdict": "error", "feedback": "It is four."}
            ],
            "attention_checks": [{"position": 2}, {"position": 4}],
        },
    )
    return study_link_create(
        audit=demo_audit,
        batch=batch,
        capacity=3,
        completion_code="STEPCODE9",
        created_by=admin_user,
    )


def test_a_step_study_participant_labels_on_the_labelling_page(
    page, step_link, admin_user, artifacts_dir
):
    token = step_link.token
    # given a visitor who consents and practises (a wrong verdict: feedback says so)
    page.goto(f"/s/{token}/?PROLIFIC_PID=stepbrowser")
    page.get_by_text(STEP_CONSENT).wait_for()
    page.get_by_role("button", name="I agree to take part").click()
    page.get_by_role("button", name="Start the practice").click()
    page.get_by_role("heading", name="Practice 1 of 1").wait_for()
    page.get_by_role("group", name="Is this step correct?").get_by_text(
        "correct", exact=True
    ).click()
    page.get_by_role("button", name="Check my answer").click()
    assert "expected error, you chose correct" in page.get_by_role("status").inner_text()
    assert_no_serious_axe_violations(page)
    page.get_by_role("link", name="Continue").click()
    # when they label on the labelling page: the gold verdict on the checks, by keyboard
    participant = Participant.objects.get(platform_id="stepbrowser")
    items = participant.assignment.items.select_related("batch_item").order_by("position")
    keys = {"correct": "1", "error": "2", "abstain": "3"}
    page.wait_for_url(f"**/s/{token}/steps/1/")
    page.locator("#label-app").wait_for()
    assert_no_serious_axe_violations(page)
    for item in items:
        page.wait_for_url(f"**/s/{token}/steps/{item.position}/")
        page.get_by_role("heading", name=f"Item {item.position} of 5").wait_for()
        verdict = item.batch_item.gold_verdict if item.batch_item.is_gold else "correct"
        page.keyboard.press(keys[verdict])
        if verdict == "error":
            page.keyboard.press("ArrowDown")  # the first category
            page.get_by_text("Saved ✓").wait_for()
        if item.position < 5:
            page.keyboard.press("Enter")
    page.get_by_text("Saved ✓").wait_for()
    page.get_by_role("button", name="Submit assignment…").click()
    page.locator("#submit-confirm").click()
    # then, once submitted, the code (no questionnaire in this study)
    page.wait_for_url(re.compile(rf"/s/{token}/done/$"))
    assert page.locator("#completion-code").inner_text() == "STEPCODE9"
    page.screenshot(path=str(artifacts_dir / "step-study-completed.png"), full_page=True)
    participant.refresh_from_db()
    assert participant.completed_at is not None and participant.excluded_at is None
    assert participant.assignment.labels.count() == 5
    assert page.errors == [] and page.csp_violations == []
    # and an admin sees both checks passed on the study page
    admin = page.context.browser.new_context(base_url=page.url.split("/s/")[0])
    admin_page = admin.new_page()
    sign_in(admin_page, admin_user)
    admin_page.goto(f"/studies/{step_link.study.audit.slug}/")
    row = admin_page.locator("#participants tr", has_text="stepbrowser")
    assert "2:pass 4:pass" in row.inner_text() and "completed" in row.inner_text()
    assert_no_serious_axe_violations(admin_page)
    admin.close()
