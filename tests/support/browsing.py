"""Helpers for the browser tests (Playwright pages on the live server)."""

import re


def sign_in(page, user) -> None:
    """Sign ``user`` in through the login form (their password is ``user.raw_password``)."""
    page.goto("/accounts/login/")
    page.locator("#id_username").fill(user.username)
    page.locator("#id_password").fill(user.raw_password)
    page.locator("#id_password").press("Enter")
    page.wait_for_load_state("load")


# Runs before any page script (Playwright injects it past the page's CSP): every violation
# the browser reports becomes a console message the test collects.
_CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || "inline"}`
    + ` at ${e.documentURI} (${e.sourceFile || ""}:${e.lineNumber || 0}) ${e.sample || ""}`);
});
"""


def watch_csp(page) -> list[str]:
    """Collect Content-Security-Policy violations on ``page`` (the event, and Chromium's own
    "Refused to ..." console errors, which also cover violations with no DOM to fire on)."""
    violations: list[str] = []
    page.add_init_script(_CSP_LISTENER)

    def on_console(message) -> None:
        text = message.text
        if text.startswith("CSP violation") or "Content Security Policy" in text:
            violations.append(text)

    page.on("console", on_console)
    return violations


def tab_to(page, text: str, limit: int = 40) -> None:
    """Press Tab until the focused element's text is ``text``."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent.trim()") == text:
            return
    raise AssertionError(f"no focusable {text!r}")


def submit_by_keyboard(page, *, labelled: int, skipped: int, flagged: int) -> None:
    """The habitual Enter does not submit; the button asks first, naming the counts, with
    "Keep labelling" focused; Tab to "Submit now" and Enter submits."""
    # a function, not an expression string: Playwright evals a string in the page (CSP: no eval)
    assert page.evaluate("() => document.activeElement.id") != "submit-button"
    page.keyboard.press("Enter")
    page.keyboard.press("Enter")
    page.wait_for_timeout(300)
    assert page.locator("#submit-dialog[open]").count() == 0
    assert re.search(r"/my/\w+/\d+/$", page.url)
    tab_to(page, "Submit assignment…")
    page.keyboard.press("Enter")
    page.locator("#submit-dialog[open]").wait_for()
    counts = page.locator("#submit-counts").text_content()
    assert f"{labelled} labelled" in counts, counts
    assert f"{skipped} skipped" in counts and f"{flagged} flagged" in counts, counts
    assert page.evaluate("() => document.activeElement.id") == "submit-cancel"
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.id") == "submit-confirm"
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/my/$"))
