"""Guessing loops against every sign-in surface (login form, admin login, HTTP Basic, API
tokens): django-axes locks the account and the address, says so, and an admin unlocks."""

import base64
import secrets

import pytest
from axes.models import AccessAttempt
from django.core.management import call_command
from django.test import Client, override_settings

pytestmark = pytest.mark.django_db

GUESSES = 40


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def _form_login(client: Client, path: str, username: str, password: str, ip="10.0.0.1"):
    return client.post(path, {"username": username, "password": password}, REMOTE_ADDR=ip)


def _signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"], ids=["form", "admin"])
def test_forty_wrong_passwords_then_the_right_one_is_refused_until_an_admin_unlocks(
    path, admin_user, settings
):
    # given an attacker guessing the admin's password
    client = Client()
    statuses = [
        _form_login(client, path, admin_user.username, f"guess-{i}").status_code
        for i in range(GUESSES)
    ]
    # then the first guesses are plain failures and the rest are the lockout page
    limit = settings.AXES_FAILURE_LIMIT
    assert statuses[: limit - 1] == [200] * (limit - 1)
    assert set(statuses[limit:]) == {429}
    # when the right password comes, it is refused too, with a page that says why
    response = _form_login(client, path, admin_user.username, admin_user.raw_password)
    assert response.status_code == 429
    assert not _signed_in(client)
    body = response.content.decode()
    assert "Sign-in locked" in body and "ask an admin" in body
    assert "15 minutes" in body and response["Retry-After"] == "900"
    # when an admin runs the unlock command for that account and the address
    call_command("axes_reset_username", admin_user.username)
    call_command("axes_reset_ip", "10.0.0.1")
    # then the right password works at once
    response = _form_login(client, path, admin_user.username, admin_user.raw_password)
    assert response.status_code == 302 and _signed_in(client)


def test_a_lockout_on_the_form_also_refuses_http_basic(api_client, researcher, settings):
    # given the account locked out through the login form
    for i in range(settings.AXES_FAILURE_LIMIT):
        _form_login(Client(), "/accounts/login/", researcher.username, f"x{i}", ip="10.0.0.9")
    # when the right password is sent by Basic from another address
    response = api_client.get(
        "/api/judges/",
        HTTP_AUTHORIZATION=_basic(researcher.username, researcher.raw_password),
        REMOTE_ADDR="10.0.0.10",
    )
    # then it is refused with the API's error body, not served
    assert response.status_code == 429
    assert response.json()["code"] == "locked_out"
    assert set(response.json()) == {"code", "message", "extra"}


def test_a_basic_auth_guessing_loop_locks_the_account_and_the_command_unlocks(
    api_client, researcher, settings
):
    # given forty wrong passwords by HTTP Basic
    answers = [
        api_client.get(
            "/api/judges/", HTTP_AUTHORIZATION=_basic(researcher.username, secrets.token_hex(4))
        )
        for _ in range(GUESSES)
    ]
    limit = settings.AXES_FAILURE_LIMIT
    # then each early guess is a 401 and the rest a 429 lockout, never a 500
    assert {a.status_code for a in answers[: limit - 1]} == {401}
    assert {a.status_code for a in answers[limit:]} == {429}
    assert answers[-1].json()["code"] == "locked_out"
    assert answers[-1]["Retry-After"] == str(settings.STEPAUDIT_LOGIN_COOLOFF_MINUTES * 60)
    # when the right password comes
    right = _basic(researcher.username, researcher.raw_password)
    assert api_client.get("/api/judges/", HTTP_AUTHORIZATION=right).status_code == 429
    # then only the unlock command lets it in
    call_command("axes_reset_username", researcher.username)
    call_command("axes_reset_ip", "127.0.0.1")
    assert api_client.get("/api/judges/", HTTP_AUTHORIZATION=right).status_code == 200


def test_spraying_many_accounts_from_one_address_locks_the_address(
    django_user_model, researcher, settings
):
    # given one wrong password each for many accounts, all from one address
    for i in range(settings.AXES_FAILURE_LIMIT):
        _form_login(Client(), "/accounts/login/", f"user{i}", "Winter2026!", ip="10.1.1.1")
    # when a real user signs in from that address with the right password
    locked = _form_login(
        Client(), "/accounts/login/", researcher.username, researcher.raw_password, ip="10.1.1.1"
    )
    elsewhere = Client()
    other = _form_login(
        elsewhere, "/accounts/login/", researcher.username, researcher.raw_password, ip="10.2.2.2"
    )
    # then the address is locked, the account (never guessed) is not
    assert locked.status_code == 429
    assert other.status_code == 302 and _signed_in(elsewhere)


def test_guessing_one_account_from_many_addresses_locks_the_account(researcher, settings):
    # given wrong passwords for one account from a new address each time
    for i in range(settings.AXES_FAILURE_LIMIT):
        _form_login(Client(), "/accounts/login/", researcher.username, f"p{i}", ip=f"10.3.0.{i}")
    # when the owner signs in with the right password from a fresh address
    response = _form_login(
        Client(), "/accounts/login/", researcher.username, researcher.raw_password, ip="10.9.9.9"
    )
    # then the account is locked
    assert response.status_code == 429


def test_a_forged_x_forwarded_for_does_not_reset_the_count_without_a_proxy(researcher, settings):
    # given no proxy in front (the default) and a client inventing a new X-Forwarded-For each time
    assert settings.STEPAUDIT_BEHIND_PROXY is False
    for i in range(settings.AXES_FAILURE_LIMIT):
        Client().post(
            "/accounts/login/",
            {"username": f"spray{i}", "password": "x"},
            REMOTE_ADDR="10.4.4.4",
            HTTP_X_FORWARDED_FOR=f"192.0.2.{i}",
        )
    # then all of it counted against the peer's own address
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"10.4.4.4"}


@override_settings(STEPAUDIT_BEHIND_PROXY=True, STEPAUDIT_PROXY_COUNT=1)
def test_behind_the_proxy_the_address_is_the_one_the_proxy_appended(researcher, settings):
    # given requests through our proxy (peer 172.18.0.5), each carrying a forged left part
    for i in range(settings.AXES_FAILURE_LIMIT):
        Client().post(
            "/accounts/login/",
            {"username": f"spray{i}", "password": "x"},
            REMOTE_ADDR="172.18.0.5",
            HTTP_X_FORWARDED_FOR=f"192.0.2.{i}, 198.51.100.7",
        )
    # then the failures count against the client the proxy saw, which is now locked
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"198.51.100.7"}
    response = Client().post(
        "/accounts/login/",
        {"username": researcher.username, "password": researcher.raw_password},
        REMOTE_ADDR="172.18.0.5",
        HTTP_X_FORWARDED_FOR="198.51.100.7",
    )
    assert response.status_code == 429
    # and another client behind the same proxy is not
    response = Client().post(
        "/accounts/login/",
        {"username": researcher.username, "password": researcher.raw_password},
        REMOTE_ADDR="172.18.0.5",
        HTTP_X_FORWARDED_FOR="203.0.113.3",
    )
    assert response.status_code == 302


def test_a_token_guessing_loop_locks_the_address_not_the_good_tokens_elsewhere(
    api_client, researcher, settings
):
    # given a researcher's real token
    from datetime import timedelta

    from accounts.services import api_token_create

    _, token = api_token_create(user=researcher, name="nb", expires_in=timedelta(days=7))
    # when an attacker tries forty random tokens from one address
    answers = [
        api_client.get(
            "/api/judges/",
            HTTP_AUTHORIZATION=f"Token sa_{secrets.token_hex(32)}",
            REMOTE_ADDR="10.5.5.5",
        )
        for _ in range(GUESSES)
    ]
    limit = settings.AXES_FAILURE_LIMIT
    # then the early ones are 401 and the rest 429, and even the real token is refused there
    assert {a.status_code for a in answers[: limit - 1]} == {401}
    assert {a.status_code for a in answers[limit:]} == {429}
    assert (
        api_client.get(
            "/api/judges/", HTTP_AUTHORIZATION=f"Token {token}", REMOTE_ADDR="10.5.5.5"
        ).status_code
        == 429
    )
    # but the notebook on its own address still works
    response = api_client.get(
        "/api/judges/", HTTP_AUTHORIZATION=f"Token {token}", REMOTE_ADDR="10.6.6.6"
    )
    assert response.status_code == 200


def test_a_wrong_token_with_a_real_prefix_is_counted_under_its_owner(api_client, researcher):
    # given a real token whose first characters an attacker learnt
    from datetime import timedelta

    from accounts.services import api_token_create

    _, token = api_token_create(user=researcher, name="nb", expires_in=timedelta(days=7))
    forged = token[:15] + "0" * (len(token) - 15)
    # when it is tried
    response = api_client.get("/api/judges/", HTTP_AUTHORIZATION=f"Token {forged}")
    # then it is refused and the admin sees the attempt under the owner's name
    assert response.status_code == 401
    assert AccessAttempt.objects.filter(username=researcher.username).exists()


def test_the_admin_lists_attempts_and_can_unlock_from_the_command_line(researcher, settings):
    # given a locked account
    for i in range(settings.AXES_FAILURE_LIMIT):
        _form_login(Client(), "/accounts/login/", researcher.username, f"p{i}")
    # when the admin lists and resets
    call_command("axes_list_attempts")
    call_command("axes_reset_username", researcher.username)
    # then nothing of that account is left
    assert not AccessAttempt.objects.filter(username=researcher.username).exists()
