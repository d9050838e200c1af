"""The pages this app adds, the admin and the sign-in lockout in a real browser, under the
Content-Security-Policy (the ``page`` fixture fails a test on any violation)."""

import re

import pytest
from browsing import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_admin_pages_and_the_tokens_page_run_under_the_policy(page, admin_user, demo_audit):
    # given an admin signed in through the form
    sign_in(page, admin_user)
    # when they walk the admin and the pages with progress bars and forms
    for url in (
        "/admin/",
        "/admin/auth/user/",
        "/admin/auth/user/add/",
        f"/admin/auth/user/{admin_user.pk}/change/",
        "/admin/annotations/audit/",
        f"/admin/annotations/audit/{demo_audit.pk}/change/",
        "/admin/axes/accessattempt/",
        "/admin/knox/authtoken/",
        f"/audits/{demo_audit.slug}/batches/",
        f"/audits/{demo_audit.slug}/import/",
        "/api/docs/",
    ):
        response = page.goto(url)
        page.wait_for_load_state("networkidle")
        assert response.status < 400, url
    # the admin's own scripts ran (the user form's password widgets, the filter sidebar)
    page.goto("/admin/auth/user/")
    assert page.locator("#changelist-filter").is_visible()
    # when they create a token on their page (linked from the app's nav)
    page.goto("/")
    page.get_by_role("link", name="My API tokens").click()
    page.get_by_label("Name").fill("browser notebook")
    page.get_by_role("button", name="Create token").click()
    # then it is shown once, selectable, and the list names it
    token = page.locator("#new-token").input_value()
    assert token.startswith("sa_")
    assert page.get_by_role("cell", name="browser notebook", exact=True).is_visible()
    # and after a reload it is gone from the page; revoking empties the list
    page.goto("/accounts/tokens/")
    assert token not in page.content()
    page.get_by_role("button", name="Revoke browser notebook").click()
    page.get_by_text("Token revoked").wait_for()
    assert page.get_by_text("You have no API tokens.").is_visible()
    assert page.errors == [] and page.csp_violations == []


def test_a_guessing_loop_in_the_browser_ends_on_the_lockout_page(page, researcher, settings):
    # given the sign-in form, and wrong passwords up to the limit
    for i in range(settings.AXES_FAILURE_LIMIT):
        page.goto("/accounts/login/")
        page.locator("#id_username").fill(researcher.username)
        page.locator("#id_password").fill(f"wrong-{i}")
        page.locator("#id_password").press("Enter")
        page.wait_for_load_state("load")
    # then the browser shows the lockout page, and the right password changes nothing
    assert page.get_by_role("heading", name="Sign-in locked").is_visible()
    sign_in(page, researcher)
    assert page.get_by_role("heading", name="Sign-in locked").is_visible()
    assert not re.search(r"/my/|/reports/", page.url)
    assert page.errors == [] and page.csp_violations == []


def test_the_policy_is_enforced_not_just_reported(page, clinician):
    # given a signed-in page, when a script tries to add inline code and style
    sign_in(page, clinician)
    page.goto("/my/")
    page.evaluate(
        """() => {
          const s = document.createElement("script");
          s.textContent = "window.__injected = true";
          document.body.appendChild(s);
          document.body.setAttribute("style", "background: red");
        }"""
    )
    page.wait_for_timeout(200)
    # then neither ran, and the listener the other tests rely on saw both
    assert page.evaluate("window.__injected === undefined")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") != "rgb(255, 0, 0)"
    assert any("script-src" in v for v in page.csp_violations)
    assert any("style-src" in v for v in page.csp_violations)
    page.csp_violations.clear()  # the violations were the point of this test
