"""The researcher's report page in a real browser (Debian's chromium through Playwright)."""

import io

import pandas as pd
import pytest
from browsing import sign_in
from django.urls import reverse

pytestmark = [pytest.mark.browser, pytest.mark.slow]
# The browser fixture (tests/conftest.py) lifts Django's async guard for the test's own ORM
# reads while Playwright's event loop runs in this thread.


def test_researcher_reads_the_report_and_downloads_a_table(
    page, expert_labels, researcher, condition_names, artifacts_dir
):
    audit = expert_labels  # reference verdicts on every step + two clinicians' labels
    # given a signed-in researcher
    sign_in(page, researcher)
    # when they open the audit's report page
    page.goto(reverse("reports:audit", args=[audit.slug]) + "?resamples=200")
    # then the error-rate figure and the answer to the ordering question are there
    figure = page.locator("#h-rates ~ figure.rt-figure svg").first
    figure.wait_for()
    assert figure.is_visible()
    # drawn in colour under the CSP: presentation attributes, no style= for it to block
    assert figure.locator("[style]").count() == 0
    assert figure.locator("[fill], [stroke]").count() > 10
    heading = page.get_by_role("heading", name="Findings")
    assert heading.is_visible()
    answer = page.locator(".rt-findings .rt-answer .rt-big").first
    assert answer.inner_text().strip() in {
        "Reproduces",
        "Consistent with",
        "Does not reproduce",
        "Inconclusive",
    }
    assert "P(same ordering)" in page.locator(".rt-findings .rt-answer").first.text_content()
    # the findings come before the settings form
    assert (
        page.locator("h2#h-findings").bounding_box()["y"]
        < (page.locator("#h-settings").bounding_box()["y"])
    )
    # and, before unblinding, no condition name anywhere on the page
    content = page.content()
    for name in condition_names:
        assert name not in content, name
    assert page.get_by_text("Blinded — conditions shown by blind code").is_visible()
    # when they download the error-rate table
    table_figure = page.locator("figure.rt-table").filter(
        has=page.get_by_text("Error rates", exact=True)
    )
    link = table_figure.get_by_role("link", name="CSV")
    with page.expect_download() as info:
        link.click()
    download = info.value
    with open(download.path(), encoding="utf-8") as handle:
        table = pd.read_csv(io.StringIO(handle.read()))
    # then pandas reads it: one row per evaluator × condition, blind codes only
    codes = set(audit.conditions.values_list("blind_code", flat=True))
    assert {"evaluator", "condition", "error_rate", "ci_low", "ci_high"} <= set(table.columns)
    assert set(table["condition"]) == codes
    assert download.suggested_filename == f"{audit.slug}-error_rates.csv"
    # and the page ran without a script error; a screenshot for the record
    page.screenshot(path=str(artifacts_dir / "report.png"), full_page=True)
    assert page.errors == [] and page.csp_violations == []
