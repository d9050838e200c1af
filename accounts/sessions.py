"""The session engine: Django's ``cached_db`` without a database read per new session.

Django checks that a freshly drawn key is free (a cache look-up and a ``SELECT`` on the session
table) before inserting it. The key is 32 characters from 36 (165 bits), and the insert of a
new session refuses a taken key anyway (``CreateError``: ``create()`` then draws again), so
the check only costs a statement on every sign-in and every enrolment through a study link.
"""

from django.contrib.sessions.backends.base import VALID_KEY_CHARS
from django.contrib.sessions.backends.cached_db import SessionStore as CachedDbSessionStore
from django.utils.crypto import get_random_string


class SessionStore(CachedDbSessionStore):
    def _get_new_session_key(self) -> str:
        return get_random_string(32, VALID_KEY_CHARS)
