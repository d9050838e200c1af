"""API tokens as an attacker sees them: shown once, never again, revocable, expiring, and
HTTP Basic switchable off."""

import re
from datetime import timedelta

import pytest
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone
from knox.models import AuthToken

from accounts.models import ApiTokenInfo

pytestmark = pytest.mark.django_db

TOKENS = reverse("accounts:tokens")


def _create(client, name="laptop notebook", days=30):
    response = client.post(TOKENS, {"name": name, "expires_in_days": days})
    assert response.status_code == 201, response.content
    match = re.search(r'id="new-token"[^>]*value="([^"]+)"', response.content.decode())
    assert match, "the new token is shown in the answer"
    return response, match.group(1)


def test_a_researcher_creates_a_token_sees_it_once_and_uses_it(client, api_client, researcher):
    # given a signed-in researcher
    client.force_login(researcher)
    # when they create a token
    response, token = _create(client)
    # then the answer shows it once, is not cached, and the token opens the API
    assert token.startswith("sa_") and len(token) > 60
    assert "no-store" in response["Cache-Control"]
    ok = api_client.get("/api/judges/", HTTP_AUTHORIZATION=f"Token {token}")
    assert ok.status_code == 200
    # and the list shows its name, dates and last use, never the token
    listing = client.get(TOKENS).content.decode()
    assert "laptop notebook" in listing and token not in listing and token[:15] not in listing
    info = ApiTokenInfo.objects.get(token__user=researcher)
    assert info.last_used_at is not None
    # and the database holds a digest only
    row = AuthToken.objects.get(user=researcher)
    assert token not in (row.digest, row.token_key) and len(row.digest) == 128


def test_the_token_is_not_retrievable_from_any_page_or_api_later(client, api_client, admin_user):
    # given an admin who created a token
    client.force_login(admin_user)
    _, token = _create(client, name="export job")
    # when every page and API answer the admin can reach is fetched again
    urls = [
        "/",
        TOKENS,
        "/admin/",
        "/admin/knox/authtoken/",
        f"/admin/knox/authtoken/{AuthToken.objects.get().digest}/change/",
        "/admin/accounts/apitokeninfo/",
        "/api/schema/?format=json",
        "/api/judges/",
        "/api/judges/runs/",
        "/reports/",
    ]
    bodies = {url: client.get(url) for url in urls}
    # then none of them contains the token (or its lookup prefix)
    for url, response in bodies.items():
        assert response.status_code in (200, 404), (url, response.status_code)
        text = response.content.decode()
        assert token not in text and token[:15] not in text, url
    assert api_client.get("/api/judges/", HTTP_AUTHORIZATION=f"Token {token}").status_code == 200


def test_a_revoked_token_is_refused(client, api_client, researcher):
    # given a token in use
    client.force_login(researcher)
    _, token = _create(client)
    auth = {"HTTP_AUTHORIZATION": f"Token {token}"}
    assert api_client.get("/api/judges/", **auth).status_code == 200
    # when the owner revokes it
    info = ApiTokenInfo.objects.get(token__user=researcher)
    response = client.post(reverse("accounts:token-revoke", args=[info.pk]), follow=True)
    # then it is gone from the list and refused by the API with the error body
    assert "Token revoked" in response.content.decode()
    assert not AuthToken.objects.filter(user=researcher).exists()
    refused = api_client.get("/api/judges/", **auth)
    assert refused.status_code == 401
    assert refused.json()["code"] == "not_authenticated"
    assert refused["WWW-Authenticate"] == "Token"


def test_nobody_revokes_another_users_token(client, api_client, researcher, admin_user):
    # given the researcher's token
    client.force_login(researcher)
    _, token = _create(client)
    info = ApiTokenInfo.objects.get(token__user=researcher)
    # when another user (even an admin) posts its revoke URL
    client.force_login(admin_user)
    response = client.post(reverse("accounts:token-revoke", args=[info.pk]), follow=True)
    # then nothing happens to it
    assert "No such token" in response.content.decode()
    assert api_client.get("/api/judges/", HTTP_AUTHORIZATION=f"Token {token}").status_code == 200


def test_an_expired_token_is_refused(client, api_client, researcher):
    # given a token past its expiry
    client.force_login(researcher)
    _, token = _create(client, days=7)
    AuthToken.objects.filter(user=researcher).update(expiry=timezone.now() - timedelta(seconds=1))
    # when it is used
    response = api_client.get("/api/judges/", HTTP_AUTHORIZATION=f"Token {token}")
    # then it is refused and knox deleted it
    assert response.status_code == 401
    assert not AuthToken.objects.filter(user=researcher).exists()


def test_clinicians_get_no_tokens_and_a_demoted_users_token_stops_working(
    client, api_client, clinician, researcher
):
    # given a clinician
    client.force_login(clinician)
    # then they see no link and cannot open or post the page
    assert "My API tokens" not in client.get("/my/").content.decode()
    assert client.get(TOKENS).status_code == 403
    assert client.post(TOKENS, {"name": "x", "expires_in_days": 30}).status_code == 403
    assert not AuthToken.objects.exists()
    # given a researcher's token, when the researcher becomes a clinician
    client.force_login(researcher)
    _, token = _create(client)
    from annotations.roles import Role
    from annotations.services.users import user_create_or_update

    user_create_or_update(username=researcher.username, role=Role.CLINICIAN, password="pw-new-1")
    # then the token no longer authenticates
    response = api_client.get("/api/my/assignments/", HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 401


def test_a_token_may_not_outlive_the_maximum_and_needs_a_name(client, researcher, settings):
    # given the maximum lifetime lowered to 30 days
    settings.STEPAUDIT_API_TOKEN_MAX_DAYS = 30
    client.force_login(researcher)
    # when a longer one or a nameless one is asked for
    too_long = client.post(TOKENS, {"name": "x", "expires_in_days": 365})
    nameless = client.post(TOKENS, {"name": "   ", "expires_in_days": 30})
    # then both are refused with the form's reasons and nothing is created
    assert too_long.status_code == 400 and nameless.status_code == 400
    assert not AuthToken.objects.exists()
    _create(client, days=30)
    assert AuthToken.objects.get().expiry < timezone.now() + timedelta(days=30, minutes=1)


def test_the_page_shows_the_token_only_in_the_answer_to_the_post(client, researcher):
    # given a created token
    client.force_login(researcher)
    _, token = _create(client)
    # when the page is reloaded (a GET), or the session is inspected
    again = client.get(TOKENS).content.decode()
    # then the token is nowhere: not on the page, not in the session
    assert token not in again
    assert token not in str(dict(client.session))


@override_settings(STEPAUDIT_API_BASIC_AUTH=False)
def test_basic_auth_turned_off_answers_401_and_tokens_still_work(client, api_client, researcher):
    # given Basic off and a researcher with the right password and a token
    import base64

    client.force_login(researcher)
    _, token = _create(client)
    creds = base64.b64encode(f"{researcher.username}:{researcher.raw_password}".encode()).decode()
    # when the right password is sent by Basic
    response = api_client.get("/api/judges/", HTTP_AUTHORIZATION=f"Basic {creds}")
    # then it is refused with the reason and the scheme to use instead
    assert response.status_code == 401
    assert response.json()["code"] == "basic_auth_disabled"
    assert response["WWW-Authenticate"] == "Token"
    # and the token works
    assert api_client.get("/api/judges/", HTTP_AUTHORIZATION=f"Token {token}").status_code == 200


def test_basic_auth_is_off_by_default_in_production_settings():
    # given the rule in base.py: the default follows DEBUG
    import secrets
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    code = "from django.conf import settings; print(settings.STEPAUDIT_API_BASIC_AUTH)"
    env = {
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(40),
        "ALLOWED_HOSTS": "x.org",
        "DJANGO_SETTINGS_MODULE": "auditapp.settings.base",
        "PATH": "/usr/bin:/bin",
    }
    # when the production settings are loaded
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # then Basic is off
    assert out.stdout.strip().splitlines()[-1] == "False", out.stderr
