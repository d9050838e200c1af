"""An admin makes a trace-rating audit in the browser: rows added and removed, the guidelines
previewed, a field error shown and fixed, then saved; under the strict CSP and axe-core."""

import pytest
from axe import assert_no_serious_axe_violations, axe_violations
from browsing import sign_in
from django.urls import reverse

from annotations.models import Audit

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_an_admin_builds_a_likert_audit_with_rows_and_a_preview(page, admin_user, artifacts_dir):
    # given an admin on the new-audit page
    sign_in(page, admin_user)
    page.goto(reverse("annotations:audit-new"))
    assert assert_no_serious_axe_violations(page) == []  # nothing of any impact
    # when they fill in the basics and choose trace ratings
    page.get_by_label("Slug").fill("browser-study")
    page.get_by_label("Kind").select_option("trace_ratings")
    page.get_by_label("Name", exact=True).fill("Browser study: four trace types")
    page.get_by_label("Guidelines").fill("## Read carefully\n\nThen answer **both** questions.")
    # and preview the guidelines
    page.get_by_role("button", name="Preview guidelines").click()
    page.wait_for_load_state("load")
    preview = page.get_by_role("region", name="Guidelines preview (not saved)")
    assert preview.get_by_role("heading", name="Read carefully").is_visible()
    assert preview.locator("strong").inner_text() == "both"
    assert not Audit.objects.exists()
    # and remove every error category but one (a rating audit has none: clear the last)
    categories = page.locator('[data-list="error_categories"]')
    while categories.get_by_role("button", name="Remove category").count() > 1:
        categories.get_by_role("button", name="Remove category").first.click()
    categories.get_by_label("Category").first.fill("")
    # and add two Likert items, the second with the first one's key
    likert = page.locator('[data-list="likert_items"]')
    likert.get_by_label("Key").first.fill("clarity")
    likert.get_by_label("Question").first.fill("How clear is this reasoning?")
    likert.get_by_label("Highest point").first.fill("7")
    likert.get_by_label("Low anchor").first.fill("unclear")
    likert.get_by_label("High anchor").first.fill("clear")
    likert.get_by_role("button", name="Add item").click()
    assert likert.get_by_role("group").count() == 2  # the blank row offered, and the new one
    likert.get_by_label("Key").nth(1).fill("clarity")
    likert.get_by_label("Question").nth(1).fill("How much effort did it take?")
    assert assert_no_serious_axe_violations(page) == []  # nothing of any impact
    page.get_by_role("button", name="Create audit").click()
    page.wait_for_load_state("load")
    # then the page says why it was not saved, at the field, and keeps every row
    assert "Not saved" in page.get_by_role("alert").inner_text()
    assert "listed twice" in likert.inner_text()
    assert not Audit.objects.exists()
    assert assert_no_serious_axe_violations(page) == []  # nothing of any impact
    # when they give the second item its own key and save
    likert.get_by_label("Key").nth(1).fill("effort")
    page.get_by_role("button", name="Create audit").click()
    page.wait_for_url("**/audits/browser-study/edit/")
    # then the audit holds exactly what was entered, and the edit page shows it back
    audit = Audit.objects.get(slug="browser-study")
    assert audit.kind == "trace_ratings" and audit.error_categories == []
    assert [(i["key"], i["max"]) for i in audit.likert_items] == [("clarity", 7), ("effort", 5)]
    assert audit.likert_items[0]["max_label"] == "clear"
    assert (
        page.locator('[data-list="likert_items"]').get_by_label("Key").nth(1).input_value()
        == "effort"
    )
    assert "created" in page.locator(".messages").inner_text()
    assert assert_no_serious_axe_violations(page) == []  # nothing of any impact
    assert page.errors == []
    page.screenshot(path=str(artifacts_dir / "audit_form.png"), full_page=True)


def test_the_accessibility_check_finds_a_violation(page):
    # given a page with an unlabelled input and an image without alternative text
    page.set_content('<html lang="en"><title>t</title><main><img src="x.png"><input></main></html>')
    # when axe-core runs, then it reports both (the check can fail)
    assert {"image-alt", "label"} <= {v["id"] for v in axe_violations(page)}
