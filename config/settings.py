"""Settings for the control room, read from the environment (12-factor).

Defaults are the embedded set-up: a SQLite file and a file-system Celery broker under
``var/``, so one command runs everything on a laptop. Production sets ``DATABASE_URL``
(PostgreSQL), ``CELERY_BROKER_URL`` (Redis or RabbitMQ) and ``SECRET_KEY``.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_choice, env_int, env_list, env_str
from config.rates import env_rate

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR") or BASE_DIR / "var")

DEBUG = env_bool("DJANGO_DEBUG", False)

_secret = env_str("SECRET_KEY")
if not _secret:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set unless DJANGO_DEBUG=1")
    _secret = "insecure-debug-only-key-do-not-use-in-production"
SECRET_KEY = _secret

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# Behind TLS in production. HTTPS=0 serves plain HTTP (the local demo, tests).
HTTPS = env_bool("HTTPS", not DEBUG)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = 31_536_000 if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
# Behind one reverse proxy that sets X-Forwarded-Proto and appends X-Forwarded-For: only then are they
# trusted (the scheme for HTTPS; the client address for throttles, config.ratelimit.client_ip).
BEHIND_PROXY = env_bool("BEHIND_PROXY", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_PROXY else None
SECURE_REDIRECT_EXEMPT = [r"^api/v1/health$"]
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

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
    "django_filters",
    "adaptive",
    "api",
    "dashboard",
    # Registers how queued jobs reach their workers (adaptive.services.dispatch).
    "tasks.apps.TasksConfig",
]

MIDDLEWARE = [
    # First, so that every answer (also a redirect or 429 of the middleware below) gets its
    # X-Request-ID, and every error on an /api/ path answers JSON.
    "api.middleware_errors.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "config.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Before sessions and authentication: a blocked address costs one cache read.
    "api.middleware.AuthFailureThrottleMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
_db = dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60, minimum=0))
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat all write: WAL lets readers run beside the writer, IMMEDIATE takes
    # the write lock at BEGIN (no deadlocking lock upgrades), the timeout waits instead of failing.
    _db["CONN_MAX_AGE"] = 0
    _db["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Tests use a file (not :memory:) so that a real Celery worker process can share it.
    _db["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
else:
    if _db["ENGINE"] == "django.db.backends.postgresql":
        # Django's PostgreSQL backend with a health check that skips the round trip on a busy connection.
        _db["ENGINE"] = "config.postgresql"
    _db["CONN_HEALTH_CHECKS"] = True
    # The test database's name: bin/test gives each run its own, so that runs sharing a server do not
    # drop each other's. Unset: Django's test_<name>.
    if env_str("TEST_DATABASE_NAME"):
        _db["TEST"] = {"NAME": env_str("TEST_DATABASE_NAME")}
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    # Every model permission for members of the admin group (roles are groups, see adaptive.roles).
    "adaptive.permissions.RoleAdminBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard:index"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT") or VAR_DIR / "staticfiles")
# Front-end libraries come from npm (package.json + package-lock.json, installed by bin/setup) and are
# served by the app itself through whitenoise: no CDN, the dashboard works offline.
STATICFILES_DIRS = [BASE_DIR / "static", ("vendor/chart.js", BASE_DIR / "node_modules" / "chart.js" / "dist")]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- Adaptive engine --------------------------------------------------------------------------
# Where model weights (safetensors) and memory snapshots are stored.
ARTIFACT_ROOT = Path(env_str("ARTIFACT_ROOT") or VAR_DIR / "artifacts")
# Threads per process for PyTorch; 0 keeps its default (all cores).
TORCH_NUM_THREADS = env_int("TORCH_NUM_THREADS", 0, minimum=0)
ADAPTIVE_DEVICE = env_choice("ADAPTIVE_DEVICE", "auto", ("auto", "cpu", "cuda"))
# A running retrain or evaluation beats its heartbeat at least every quarter of this; none for this
# long means its worker died, and the stale-job sweep (tasks.training.sweep_stale) fails the job.
STALE_JOB_SECONDS = env_int("STALE_JOB_SECONDS", 120, minimum=1)
MAX_WEIGHTS_BYTES = env_int("MAX_WEIGHTS_BYTES", 200 * 1024 * 1024, minimum=1024)
MAX_BATCH_ROWS = env_int("MAX_BATCH_ROWS", 5000, minimum=1)
# Request bodies: a predict batch of MAX_BATCH_ROWS rows is well under this.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("MAX_REQUEST_BYTES", 32 * 1024 * 1024, minimum=1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 8 * 1024 * 1024

# --- REST API ---------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.authentication.IngestionKeyAuthentication",
        # Users' tokens, hashed (adaptive.models.ApiToken): DRF's authtoken kept them in plain text.
        "api.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["api.permissions.IsViewer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Lists declare their query parameters as FilterSets (api.filters): validated, 400 on bad input.
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    # A bad limit or offset is a 400, not a silent default (api.pagination).
    "DEFAULT_PAGINATION_CLASS": "api.pagination.StrictLimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "api.errors.exception_handler",
    # A JSON API: bodies are JSON (the version upload, multipart, says so itself), and typed fields
    # are not read from form strings (api.serializers_fields).
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Adaptive control room API",
    "DESCRIPTION": (
        "Serve models with online error compensation, retrain them continually, gate updates on "
        "negative flips and roll back in one action. Authenticate with `Authorization: Token <key>` "
        "(users) or `Authorization: Key <key>` (ingestion keys, one deployment, predict + feedback)."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The answers no view documents itself (401, 403, 404, 413, 429, ...) and closed request bodies.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "api.schema_hooks.document_common_errors",
    ],
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI assets ship in a package: the docs work offline, no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "DeploymentStatusEnum": "adaptive.models.Deployment.Status",
        "VersionStatusEnum": "adaptive.models.ModelVersion.Status",
        # Two choice sets on fields named "level": drift bands and the loop's alert levels.
        "LevelEnum": "adaptive.models.DriftMetric.Level",
        "LoopAlertLevelEnum": [("warn", "warn"), ("error", "error")],
    },
}

# --- Celery -----------------------------------------------------------------------------------
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or "filesystem://"
if CELERY_BROKER_URL.startswith("filesystem://"):
    # The embedded broker: messages are files, so web, worker and beat share it without a server.
    # tasks.filesystem_broker (registered by tasks.celery) writes each message under tmp/ and renames
    # it into queue/<queue>/, and moves a file it cannot read to quarantine/ instead of stopping a worker.
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "control_folder": str(BROKER_DIR / "control"),
        "tmp_folder": str(BROKER_DIR / "tmp"),
        "processing_folder": str(BROKER_DIR / "processing"),
        "quarantine_folder": str(BROKER_DIR / "quarantine"),
        "store_processed": False,
        # Seconds between polls of an idle queue: the wait before a message is picked up, against
        # an idle worker's CPU. bench/broker.py: at 20 ms a message waits 14 ms (p50; p95 21 ms) and
        # an idle worker costs 1.4% of a core; kombu's default, 1 s, made it 508 ms (p95 979 ms).
        "polling_interval": env_int("BROKER_POLL_MS", 20, minimum=1) / 1000,
    }
    _default_backend = f"file://{BROKER_DIR / 'results'}"
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
    _default_backend = CELERY_BROKER_URL
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {}
    _default_backend = "rpc://"
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND") or _default_backend
CELERY_TASK_ALWAYS_EAGER = False
# How often Celery beat looks for windows to close (every deployment's window_minutes, and lost
# messages); windows due by label count are requested by the compensation update right away.
WINDOW_SCAN_SECONDS = env_int("WINDOW_SCAN_SECONDS", 30, minimum=1)
# The loop's own alarms (adaptive.services.loop, shown by health and the dashboard): queues that
# must have a healthy consumer; a worker is unhealthy after this many failed tasks in a row; a
# queued job waiting, or a label outside the memory, longer than this many seconds is a stall; a
# window is late when its oldest label waits window_minutes plus this many seconds.
LOOP_QUEUES = env_list("LOOP_QUEUES", ["default", "monitoring", "gpu"])
WORKER_UNHEALTHY_AFTER = env_int("WORKER_UNHEALTHY_AFTER", 3, minimum=1)
JOB_WAIT_WARN_SECONDS = env_int("JOB_WAIT_WARN_SECONDS", 60, minimum=1)
LABEL_LAG_WARN_SECONDS = env_int("LABEL_LAG_WARN_SECONDS", 60, minimum=1)
WINDOW_LAG_WARN_SECONDS = env_int("WINDOW_LAG_WARN_SECONDS", 120, minimum=1)

# --- Cache --------------------------------------------------------------------------------------
# Shared by every process: throttle and lockout counters (config.ratelimit) must be, or each gunicorn
# worker would count alone; health keeps the workers' state here for 5 s. The embedded default is a
# directory (config.filecache: atomic counters across processes, no server, no table to create, and
# a failed log-in does not queue for SQLite's single write lock); several hosts need Redis.
CACHE_URL = env_str("CACHE_URL") or f"file://{VAR_DIR / 'cache'}"
if CACHE_URL.startswith(("redis://", "rediss://")):
    # Clearing the cache (tests do, per test) flushes its whole Redis database: never the broker's.
    if CACHE_URL.rstrip("/") in {CELERY_BROKER_URL.rstrip("/"), CELERY_RESULT_BACKEND.rstrip("/")}:
        raise ImproperlyConfigured("CACHE_URL must be another Redis database than the Celery broker's")
    CACHES: dict[str, dict[str, object]] = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
    }
elif CACHE_URL.startswith("file://"):
    CACHES = {
        "default": {
            "BACKEND": "config.filecache.LockingFileBasedCache",
            "LOCATION": str(Path(CACHE_URL.removeprefix("file://")).resolve()),
            # Django culls a third of the entries past MAX_ENTRIES (300 by default): enough room that
            # counters of many addresses at once are not dropped. Each new entry lists the directory.
            "OPTIONS": {"MAX_ENTRIES": 10_000},
        }
    }
else:
    raise ImproperlyConfigured(f"CACHE_URL must start with file://, redis:// or rediss://, got {CACHE_URL!r}")

# Seconds a process remembers an ingestion key or API token it found valid (adaptive.credential_cache):
# a key or token revoked, or a user deactivated, in another process stops working within this time. 0: off.
AUTH_CACHE_SECONDS = env_int("AUTH_CACHE_SECONDS", 5, minimum=0)

# --- Throttles and lockouts (config.ratelimit) ---------------------------------------------------
# Rates are "N/period": "20/min", "1000/10s", "5000/hour"; windows are fixed.
# Failed API authentications (a 401 to a request that carried credentials) per client address; past
# it, the address gets 429 on /api/ (health excepted) until the window ends. Empty: off.
AUTH_FAILURES_PER_IP = env_rate("AUTH_FAILURES_PER_IP", "20/min")
# Requests per ingestion key to predict, compensate and feedback, for keys without a rate of their
# own (IngestionKey.rate). Empty: unlimited.
INGESTION_KEY_RATE = env_rate("INGESTION_KEY_RATE", "")
# Dashboard and admin log-in: LOGIN_FAILURES_LIMIT wrong passwords for one username, or
# LOGIN_FAILURES_PER_IP from one address, within LOGIN_LOCKOUT_SECONDS lock that username (or
# address) for LOGIN_LOCKOUT_SECONDS, the right password included. A success clears the username's
# count. 0: no lockout.
LOGIN_FAILURES_LIMIT = env_int("LOGIN_FAILURES_LIMIT", 5, minimum=0)
LOGIN_FAILURES_PER_IP = env_int("LOGIN_FAILURES_PER_IP", 20, minimum=0)
LOGIN_LOCKOUT_SECONDS = env_int("LOGIN_LOCKOUT_SECONDS", 300, minimum=1)

# --- Content-Security-Policy (config.csp) --------------------------------------------------------
# Sent with every HTML page; the longest matching path prefix picks the policy. The dashboard loads
# only its own scripts, styles and images (no inline code, no CDN). "{nonce}" is a fresh nonce per
# request, given to templates as request.csp_nonce.
_CSP_BASE = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)
CONTENT_SECURITY_POLICIES = {
    "/": f"{_CSP_BASE}; script-src 'self'; style-src 'self'",
    # Swagger UI: drf-spectacular's page has one inline script and one inline style, which carry the
    # nonce (templates/drf_spectacular/swagger_ui.html).
    "/api/docs/": f"{_CSP_BASE}; script-src 'self' 'nonce-{{nonce}}'; style-src 'self' 'nonce-{{nonce}}'",
    # Django's admin and DRF's browsable API write inline style attributes (no inline scripts).
    "/admin/": f"{_CSP_BASE}; script-src 'self'; style-src 'self' 'unsafe-inline'",
    "/api/": f"{_CSP_BASE}; script-src 'self'; style-src 'self' 'unsafe-inline'",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL") or "INFO"},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
