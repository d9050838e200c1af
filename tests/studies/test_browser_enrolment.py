"""A participant enrols through a study link in a real browser (Debian's chromium through
Playwright): consent, practice with feedback, the items with an attention check, the
questionnaire, the completion code; then an admin finds them on the study page."""

import pytest
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
    page.screenshot(path=str(artifacts_dir / "study-practice-feedback.png"), full_page=True)
    page.get_by_role("link", name="Continue").click()
    # when they rate the four traces; the attention check, at its set place 5, looks like any
    # other item
    for number in range(1, 6):
        page.get_by_role("heading", name=f"Item {number} of 5").wait_for()
        if CHECK_TEXT in page.content():
            assert number == 5
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
    admin_page.screenshot(path=str(artifacts_dir / "study-page.png"), full_page=True)
    admin.close()
