"""Helpers for the browser tests (Playwright pages on the live server)."""


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
