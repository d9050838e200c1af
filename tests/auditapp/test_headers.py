"""Every page and API answer, crawled per role: a strict Content-Security-Policy,
Cache-Control: no-store, no framing, no sniffing."""

import re
from urllib.parse import urljoin, urlparse

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

REQUIRED = {
    "default-src": {"'self'"},
    "script-src": {"'self'"},
    "object-src": {"'none'"},
    "base-uri": {"'self'"},
    "form-action": {"'self'"},
    "frame-ancestors": {"'none'"},
}
UNSAFE = {"'unsafe-inline'", "'unsafe-eval'", "'unsafe-hashes'", "*", "http:", "https:"}
# Not crawled: signing out ends the walk; admin delete/history pages of every row add nothing.
SKIP = re.compile(r"^/(static/|accounts/logout/)|/(delete|history)/$")


def _policy(header: str) -> dict[str, set[str]]:
    policy = {}
    for directive in header.split(";"):
        parts = directive.split()
        if parts:
            policy[parts[0]] = set(parts[1:])
    return policy


def assert_secure_headers(response, url: str) -> None:
    assert "no-store" in response.get("Cache-Control", ""), (url, response.get("Cache-Control"))
    assert response["X-Content-Type-Options"] == "nosniff", url
    if response.get("Content-Type", "").startswith("text/html"):
        policy = _policy(response["Content-Security-Policy"])
        for directive, sources in REQUIRED.items():
            assert policy.get(directive) == sources, (url, directive, policy.get(directive))
        for directive in ("script-src", "style-src", "default-src"):
            assert not (policy.get(directive, set()) & UNSAFE), (url, directive)
        assert response["X-Frame-Options"] == "DENY", url


def crawl(client: Client, start: list[str], *, limit: int = 80) -> dict[str, object]:
    """Same-site links followed breadth-first from ``start``; returns url → response."""
    seen: dict[str, object] = {}
    queue = list(start)
    while queue and len(seen) < limit:
        url = queue.pop(0)
        if url in seen or SKIP.search(urlparse(url).path):
            continue
        response = client.get(url)
        seen[url] = response
        if response.get("Content-Type", "").startswith("text/html") and response.status_code == 200:
            for href in re.findall(r'href="([^"#]+)"', response.content.decode()):
                target = urljoin(url, href.replace("&amp;", "&"))
                if target.startswith("/") and target not in seen:
                    queue.append(target)
    return seen


@pytest.fixture
def assignment(demo_audit, clinician):
    from annotations.services.batches import batch_assign, batch_build

    batch = batch_build(audit=demo_audit, name="headers", size=6, segmentation="given")
    (assignment,) = batch_assign(batch=batch, annotators=[clinician])
    return assignment


@pytest.mark.parametrize("role", ["clinician", "researcher", "admin_user"])
def test_every_page_a_role_reaches_has_the_security_headers(request, role, assignment):
    # given a signed-in user of the role
    client = Client()
    client.force_login(request.getfixturevalue(role))
    # when every page reachable from home is fetched
    pages = crawl(client, ["/", "/my/", f"/my/{assignment.public_id}/1/", "/accounts/tokens/"])
    # then every answer carries the headers, and no page failed
    assert len(pages) > 3
    for url, response in pages.items():
        assert response.status_code < 500, url
        assert_secure_headers(response, url)


def test_the_sign_in_pages_have_the_security_headers(client, admin_user):
    for url in ("/accounts/login/", "/admin/login/"):
        assert_secure_headers(client.get(url), url)


def test_every_json_answer_is_no_store(api_client, clinician, researcher, assignment):
    # given the clinician's API and the researcher's API
    api_client.force_login(clinician)
    clinician_urls = [
        "/api/my/assignments/",
        f"/api/my/assignments/{assignment.public_id}/items/1/",
        "/api/judges/",  # a 403 answer is JSON too
        "/api/no-such-endpoint/",  # and a 404
    ]
    answers = {url: api_client.get(url) for url in clinician_urls}
    api_client.force_login(researcher)
    for url in ("/api/judges/", "/api/judges/runs/", "/api/audits/"):
        answers[url] = api_client.get(url)
    # then every one of them says no-store
    for url, response in answers.items():
        assert response["Content-Type"].startswith("application/json"), url
        assert_secure_headers(response, url)


def test_static_files_keep_their_cache_lifetime(client):
    # Static files are served by WhiteNoise before the no-store middleware (only with
    # DEBUG off; test_runtime checks it under gunicorn). Here: the middleware order.
    from django.conf import settings

    middleware = settings.MIDDLEWARE
    assert middleware.index("whitenoise.middleware.WhiteNoiseMiddleware") < middleware.index(
        "accounts.middleware.NoStoreMiddleware"
    )
