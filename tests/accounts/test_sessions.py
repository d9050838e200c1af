"""Idle sessions end; active ones are refreshed at most once a minute (the labelling loop
must not write its session on every save)."""

import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.middleware import LAST_SEEN_KEY, SIGNED_IN_KEY

pytestmark = pytest.mark.django_db


def _age_session(client, **seconds_ago: int) -> None:
    session = client.session
    now = int(time.time())
    for key, ago in seconds_ago.items():
        session[key] = now - ago
    session.save()


def _session_writes(queries) -> list[str]:
    return [
        q["sql"]
        for q in queries
        if "django_session" in q["sql"]
        and q["sql"].lstrip().upper().startswith(("UPDATE", "INSERT"))
    ]


def test_signing_in_through_the_form_starts_both_clocks(client, clinician):
    # when
    client.post(
        "/accounts/login/", {"username": clinician.username, "password": clinician.raw_password}
    )
    # then
    session = client.session
    assert abs(session[LAST_SEEN_KEY] - time.time()) < 5
    assert session[SIGNED_IN_KEY] == session[LAST_SEEN_KEY]


def test_an_idle_session_is_signed_out_and_told_why(client, clinician, settings):
    # given a clinician whose last request was longer ago than the idle time
    client.force_login(clinician)
    assert client.get("/my/").status_code == 200
    _age_session(client, **{LAST_SEEN_KEY: settings.STEPAUDIT_SESSION_IDLE_MINUTES * 60 + 1})
    # when they come back
    response = client.get("/my/")
    # then they are sent to sign in, the session is gone, and the login page says why
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert "_auth_user_id" not in client.session
    page = client.get(response["Location"]).content.decode()
    assert f"after {settings.STEPAUDIT_SESSION_IDLE_MINUTES} minutes without activity" in page
    # and coming back again does not sign them in
    assert client.get("/my/").status_code == 302


def test_an_idle_session_cannot_use_the_api_either(client, clinician, settings):
    # given an idle session
    client.force_login(clinician)
    _age_session(client, **{LAST_SEEN_KEY: settings.STEPAUDIT_SESSION_IDLE_MINUTES * 60 + 5})
    # when the labelling page's script calls the API with it
    response = client.get("/api/my/assignments/")
    # then the API refuses it
    assert response.status_code in (401, 403)
    assert "_auth_user_id" not in client.session


def test_a_session_ends_after_the_maximum_however_active(client, researcher, settings):
    # given a session signed in longer ago than the maximum, but active a second ago
    client.force_login(researcher)
    _age_session(
        client, **{LAST_SEEN_KEY: 1, SIGNED_IN_KEY: settings.STEPAUDIT_SESSION_MAX_HOURS * 3600 + 1}
    )
    # when
    response = client.get("/reports/")
    # then
    assert response.status_code == 302
    assert "_auth_user_id" not in client.session


def test_an_active_session_is_not_written_on_every_request(client, clinician):
    # given a session seen 30 seconds ago
    client.force_login(clinician)
    _age_session(client, **{LAST_SEEN_KEY: 30})
    stored = client.session[LAST_SEEN_KEY]
    # when it makes requests within the minute
    with CaptureQueriesContext(connection) as queries:
        for _ in range(5):
            assert client.get("/api/my/assignments/").status_code == 200
    # then the session row was never written and the stored time did not move
    assert _session_writes(queries.captured_queries) == []
    assert client.session[LAST_SEEN_KEY] == stored


def test_an_active_session_is_refreshed_once_the_stored_time_is_a_minute_old(client, clinician):
    # given a session seen 2 minutes ago
    client.force_login(clinician)
    _age_session(client, **{LAST_SEEN_KEY: 120})
    # when it makes a request
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/my/").status_code == 200
    # then the time moved to now with one write, and the next request writes nothing
    assert abs(client.session[LAST_SEEN_KEY] - time.time()) < 5
    assert len(_session_writes(queries.captured_queries)) == 1
    with CaptureQueriesContext(connection) as queries:
        client.get("/my/")
    assert _session_writes(queries.captured_queries) == []


def test_the_session_cookie_dies_with_the_browser_and_the_row_with_the_maximum(
    client, clinician, settings
):
    # when
    response = client.post(
        "/accounts/login/", {"username": clinician.username, "password": clinician.raw_password}
    )
    # then the cookie has no lifetime of its own (gone when the browser closes), is HttpOnly,
    # and the server-side session expires with the maximum
    cookie = response.cookies[settings.SESSION_COOKIE_NAME]
    assert cookie["max-age"] == "" and cookie["expires"] == ""
    assert cookie["httponly"]
    assert client.session.get_expiry_age() == settings.STEPAUDIT_SESSION_MAX_HOURS * 3600
