"""The session engine (accounts/sessions.py): a new session is one insert, no look-up of its
key first, and a key already taken is still never reused."""

import pytest
from django.contrib.sessions.models import Session
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts import sessions

pytestmark = pytest.mark.django_db


def test_a_new_session_is_inserted_without_reading_the_table_first():
    store = sessions.SessionStore()
    store["x"] = 1
    with CaptureQueriesContext(connection) as queries:
        store.create()
    on_sessions = [q["sql"] for q in queries.captured_queries if "django_session" in q["sql"]]
    assert len(on_sessions) == 1 and on_sessions[0].startswith("INSERT"), on_sessions
    assert Session.objects.filter(session_key=store.session_key).exists()


def test_a_key_already_taken_is_drawn_again_and_the_old_session_is_untouched(monkeypatch):
    first = sessions.SessionStore()
    first["owner"] = "first"
    first.create()
    draws = iter([first.session_key, "k" * 32])
    monkeypatch.setattr(sessions, "get_random_string", lambda length, chars: next(draws))
    second = sessions.SessionStore()
    second["owner"] = "second"
    second.create()
    assert second.session_key == "k" * 32
    assert sessions.SessionStore(first.session_key).load() == {"owner": "first"}
    assert Session.objects.count() == 2
