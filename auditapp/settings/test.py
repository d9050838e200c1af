"""Test settings: the base settings, made faster. Nothing here changes behaviour."""

import os

from .base import *  # noqa: F403
from .base import DATABASES, VAR_DIR

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
if DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
    DATABASES["default"]["CONN_MAX_AGE"] = 0

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory: worker and web processes started by tests must see the same data.
    # One file per test run, so concurrent runs on one checkout don't share a database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}

# django-axes stays on (the lockout tests need it); only Client.login(), which authenticates
# without a request, is let past its backend (accounts/backends.py).
AUTHENTICATION_BACKENDS = [
    "accounts.backends.AxesBackendForTests",
    "django.contrib.auth.backends.ModelBackend",
]
