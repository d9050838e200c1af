"""Helpers for the browser tests (Playwright pages on the live server)."""


def sign_in(page, user) -> None:
    """Sign ``user`` in through the login form (their password is ``user.raw_password``)."""
    page.goto("/accounts/login/")
    page.locator("#id_username").fill(user.username)
    page.locator("#id_password").fill(user.raw_password)
    page.locator("#id_password").press("Enter")
    page.wait_for_load_state("load")
