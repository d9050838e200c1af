"""The one settings module, read from the environment.

Embedded defaults (no environment at all): DEBUG on, SQLite under var/, kombu's filesystem
transport under var/broker — so a fresh clone runs with no servers. Production sets
DATABASE_URL, REDIS_URL, SECRET_KEY, ALLOWED_HOSTS and DEBUG=0; with DEBUG off a missing
secret is an error, never a silent default.
"""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(os.environ.get("STEPAUDIT_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if not raw:
        return default
    return [part.strip() for part in raw.split(",") if part.strip()]


DEBUG = env_bool("DEBUG", True)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    # Development only: a per-checkout random key kept under var/, never committed.
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    _key_file = VAR_DIR / "dev-secret-key"
    if not _key_file.exists():
        import secrets

        _key_file.write_text(secrets.token_urlsafe(50))
    SECRET_KEY = _key_file.read_text().strip()

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "knox",
    "csp",
    "accounts",
    "annotations",
    "judges",
    "reports",
    "studies",
]

MIDDLEWARE = [
    # First: probes answer before host checks, the HTTPS redirect or the session (health.py).
    "auditapp.health.HealthMiddleware",
    # Outermost of the rest: an unreachable database, cache or broker answers 503 with
    # Retry-After, never a 500 (auditapp/middleware.py).
    "auditapp.middleware.ServiceUnavailableMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "accounts.middleware.NoStoreMiddleware",
    "accounts.middleware.SessionIdleTimeoutMiddleware",
    # Last, as axes asks: it turns a lockout flagged during the view into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "auditapp.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.api_tokens",
            ],
        },
    },
]

WSGI_APPLICATION = "auditapp.wsgi.application"

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'stepaudit.sqlite3'}",
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL + a busy timeout let the web process and the worker write the same file.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0

if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # An unreachable server fails a connection in seconds (and the request answers 503),
    # instead of hanging on the operating system's TCP timeout.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 3)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Session first: its 403 for anonymous requests is what the API has always answered.
        "rest_framework.authentication.SessionAuthentication",
        "accounts.authentication.ApiTokenAuthentication",
        "accounts.authentication.ThrottledBasicAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "EXCEPTION_HANDLER": "auditapp.exceptions.api_exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# OpenAPI (docs/api.md): /api/schema/ and the Swagger UI at /api/docs/, for admins and
# researchers only (auditapp/openapi.py). Swagger UI comes from drf_spectacular_sidecar's
# static files: no CDN.
SPECTACULAR_SETTINGS = {
    "TITLE": "StepAudit API",
    "DESCRIPTION": "Blinded step-level audits of LLM reasoning traces. Errors answer "
    '{"code", "message", "extra"} with a 4xx status.',
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["annotations.permissions.IsResearcherOrAdmin"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "ImportStatusEnum": "annotations.models.imports.ImportJob.Status",
        "RunStatusEnum": "judges.models.JudgeRun.Status",
        "AuditKindEnum": "annotations.models.audits.Audit.Kind",
        "ContextModeEnum": "annotations.models.audits.Audit.ContextMode",
        "LabellingModeEnum": "annotations.models.audits.LabellingMode",
        "JudgeRunModeEnum": "judges.models.JudgeRun.Mode",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "auditapp.openapi.postprocess_common_errors",
    ],
}

# --- Celery -------------------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = None
else:
    # No server needed: kombu's filesystem transport, folders under var/broker.
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("out", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "data_folder_processed": str(_broker_dir / "processed"),
        "store_processed": False,
        "control_folder": str(_broker_dir / "control"),
    }
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Every queue the app uses, declared: a worker started without -Q consumes them all, and
# auditapp.workers can tell when one has no consumer.
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_QUEUES = (Queue("celery"), Queue("judges"))
# A broker outage never makes a worker give up: it reconnects for as long as it takes, and a
# running lane keeps going (it rides the outage out itself, judges/services/lanes.py).
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
if REDIS_URL:
    # A chunk may run for minutes; the visibility timeout must outlast it so Redis does not
    # hand the same unacked message to a second worker while the first is still busy.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": 3600,
        # Notice a dead connection in seconds, not at the next TCP timeout.
        "socket_connect_timeout": 2,
        "socket_keepalive": True,
        "health_check_interval": 5,
        "retry_on_timeout": True,
    }

# The cache is shared by web and workers (progress counters, the ping round trip). Nothing
# in it is the only copy, so while Redis is unreachable it behaves as an empty cache
# (auditapp/cache.py): sessions, role checks and progress fall back to the database.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "auditapp.cache.FailSoftRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "stepaudit",
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 2},
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

# Sessions read through the cache: one database read saved on every request of the
# labelling loop, still durable in the database (Django's cached_db, without its look-up of
# each new key: accounts/sessions.py).
SESSION_ENGINE = "accounts.sessions"

# --- Authentication: throttling, API tokens, sessions (docs/deploy.md) -------------------
# django-axes counts failed sign-ins (login form, admin login, HTTP Basic, API tokens) per
# account and per address separately; its backend goes first so a locked-out account cannot
# authenticate anywhere, Basic included.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
STEPAUDIT_LOGIN_FAILURE_LIMIT = int(os.environ.get("STEPAUDIT_LOGIN_FAILURE_LIMIT", "10"))
STEPAUDIT_LOGIN_COOLOFF_MINUTES = int(os.environ.get("STEPAUDIT_LOGIN_COOLOFF_MINUTES", "15"))
STEPAUDIT_LOGIN_LOCKOUT_BY = env_list("STEPAUDIT_LOGIN_LOCKOUT_BY", ["username", "ip_address"])
AXES_FAILURE_LIMIT = STEPAUDIT_LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=STEPAUDIT_LOGIN_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = "accounts.lockout.lockout_parameters"
AXES_LOCKOUT_CALLABLE = "accounts.lockout.lockout_response"
AXES_CLIENT_IP_CALLABLE = "accounts.lockout.client_ip_address"
AXES_RESET_ON_SUCCESS = False  # a success of the attacker's own must not reset an address
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"  # attempts visible in the admin

# Per-user API tokens (django-rest-knox: only a digest is stored). HTTP Basic sends the
# password with every call, so it is off by default in production and on with DEBUG.
STEPAUDIT_API_BASIC_AUTH = env_bool("STEPAUDIT_API_BASIC_AUTH", DEBUG)
STEPAUDIT_API_TOKEN_MAX_DAYS = int(os.environ.get("STEPAUDIT_API_TOKEN_MAX_DAYS", "365"))
KNOX_TOKEN_MODEL = "knox.AuthToken"  # named so migrations can depend on it
REST_KNOX = {
    "TOKEN_TTL": timedelta(days=90),
    "TOKEN_PREFIX": "sa_",  # recognisable by secret scanners
    "AUTH_HEADER_PREFIX": "Token",
}

# A signed-in session ends after this long without a request, and in any case this long after
# signing in; the browser's cookie goes when the browser closes.
STEPAUDIT_SESSION_IDLE_MINUTES = int(os.environ.get("STEPAUDIT_SESSION_IDLE_MINUTES", "60"))
STEPAUDIT_SESSION_MAX_HOURS = int(os.environ.get("STEPAUDIT_SESSION_MAX_HOURS", "12"))
SESSION_COOKIE_AGE = STEPAUDIT_SESSION_MAX_HOURS * 3600
SESSION_EXPIRE_AT_BROWSER_CLOSE = True

# --- Content-Security-Policy (django-csp 4) --------------------------------------------------
# No inline script or style anywhere (templates pass data by json_script; figures carry SVG
# presentation attributes, not style=); the browser tests fail on any violation.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# --- Security (production) ---------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # the labelling page's JS reads the CSRF token to post
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# A TLS-terminating proxy in front (docker-compose's Caddy): only then is its
# X-Forwarded-Proto trusted, and the client address taken from X-Forwarded-For (the last
# STEPAUDIT_PROXY_COUNT hops are proxies of ours). Without a proxy both headers are the
# client's own words and are ignored.
STEPAUDIT_BEHIND_PROXY = env_bool("STEPAUDIT_BEHIND_PROXY", False)
STEPAUDIT_PROXY_COUNT = int(os.environ.get("STEPAUDIT_PROXY_COUNT", "1"))
if STEPAUDIT_BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)

# --- App ----------------------------------------------------------------------------------
# A trace longer than this is rejected at import (documented in docs/formats.md).
STEPAUDIT_MAX_TRACE_CHARS = int(os.environ.get("STEPAUDIT_MAX_TRACE_CHARS", "200000"))
STEPAUDIT_MAX_STEPS_PER_TRACE = int(os.environ.get("STEPAUDIT_MAX_STEPS_PER_TRACE", "500"))
# An upload through the import page or API is validated within the request (docs/formats.md);
# 256 MiB is about 250,000 traces of 1,000 characters. The command line has no limit.
STEPAUDIT_MAX_UPLOAD_BYTES = int(os.environ.get("STEPAUDIT_MAX_UPLOAD_BYTES", str(256 * 2**20)))

# --- Judges: the keys and hosts a judge may use (docs/deploy.md, "Judges") -------------------
# A judge names its key by an environment variable; only the names listed here resolve, so no
# server setting (SECRET_KEY, DATABASE_URL, ...) can ever be sent to a judge's endpoint.
STEPAUDIT_JUDGE_KEY_ENVS = env_list("STEPAUDIT_JUDGE_KEY_ENVS", [])
# Hosts a judge may call: names ("api.openai.com"), "*.suffix", IP addresses or networks
# (CIDR). Loopback is allowed by default only with DEBUG on (development, tests); link-local
# and cloud-metadata addresses are refused whatever this says.
STEPAUDIT_JUDGE_ALLOWED_HOSTS = env_list(
    "STEPAUDIT_JUDGE_ALLOWED_HOSTS", ["localhost", "127.0.0.0/8", "::1"] if DEBUG else []
)
# Who may create or change judges: "admins", or "researchers" (within the hosts and keys above).
STEPAUDIT_JUDGE_EDITORS = os.environ.get("STEPAUDIT_JUDGE_EDITORS", "researchers")
if STEPAUDIT_JUDGE_EDITORS not in {"admins", "researchers"}:
    raise ImproperlyConfigured("STEPAUDIT_JUDGE_EDITORS must be 'admins' or 'researchers'.")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"quiet_outages": {"()": "auditapp.middleware.QuietOutages"}},
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # An outage is logged once by auditapp.outages, not as a traceback per request.
        "django.request": {"filters": ["quiet_outages"]},
    },
}
