"""Test settings. CHATKIT_TEST_DB=postgres runs the suite on PostgreSQL (127.0.0.1:5432)."""

import json
import os
import tempfile

SECRET_KEY = "chatkit-django-tests"
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
USE_TZ = True
TIME_ZONE = "Europe/Paris"  # not UTC, so naive/aware mistakes show
ROOT_URLCONF = "tests.urls"
ASGI_APPLICATION = "tests.asgi.application"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "rest_framework",
    "rest_framework.authtoken",
    "chatkit_django",
    "tests.testapp",
    "example_project.demo",  # the example project's models and responder are tested too
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# A live server subprocess (tests/live_server.py) is pointed at the test database by name.
LIVE_DB_NAME = os.environ.get("CHATKIT_LIVE_DB_NAME")

if os.environ.get("CHATKIT_TEST_DB") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": LIVE_DB_NAME or os.environ.get("CHATKIT_PG_NAME", "chatkit"),
            "USER": os.environ.get("PGUSER", "postgres"),
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
            # A live server process can be given psycopg's pool (tests/live/test_threads.py).
            "OPTIONS": {"pool": json.loads(os.environ["CHATKIT_TEST_POOL"])}
            if os.environ.get("CHATKIT_TEST_POOL")
            else {},
        }
    }
    # A live server process can be given Django's psycopg pool (tests/live/test_db_restart.py).
    if os.environ.get("CHATKIT_TEST_PG_POOL"):
        DATABASES["default"]["OPTIONS"] = {"pool": json.loads(os.environ["CHATKIT_TEST_PG_POOL"])}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": LIVE_DB_NAME or os.path.join(tempfile.gettempdir(), "chatkit-tests.sqlite3"),
            # A file, not :memory:, so that a live server process can share it.
            "TEST": {
                "NAME": os.path.join(tempfile.gettempdir(), f"chatkit-test-{os.getpid()}.sqlite3")
            },
        }
    }

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# A live server process gets the test's attachment storage (tests/storage_fixtures.py).
if os.environ.get("CHATKIT_TEST_STORAGE"):
    STORAGES["chatkit"] = json.loads(os.environ["CHATKIT_TEST_STORAGE"])
CHATKIT = {
    # A live server subprocess can be given another server class and keep-alive interval.
    "SERVER_CLASS": os.environ.get("CHATKIT_TEST_SERVER_CLASS", "tests.testapp.server.EchoServer"),
    "KEEPALIVE_SECONDS": float(os.environ.get("CHATKIT_TEST_KEEPALIVE", "15")),
    "RELEASE_CONNECTIONS_SECONDS": (
        None
        if os.environ.get("CHATKIT_TEST_RELEASE") == "off"
        else float(os.environ.get("CHATKIT_TEST_RELEASE", "1"))
    ),
    "REQUEST_THREADS": int(os.environ.get("CHATKIT_TEST_REQUEST_THREADS", "8")),
}
# A live server process can be given more CHATKIT keys (tests/live/test_background.py).
if os.environ.get("CHATKIT_TEST_SETTINGS"):
    CHATKIT.update(json.loads(os.environ["CHATKIT_TEST_SETTINGS"]))
# A live server process can be given a throttle cache and rates (tests/live/test_throttling.py).
if os.environ.get("CHATKIT_TEST_THROTTLE"):
    _throttle = json.loads(os.environ["CHATKIT_TEST_THROTTLE"])
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "throttle": _throttle["cache"],
    }
    CHATKIT.update(THROTTLE_CACHE="throttle", THROTTLE_RATES=_throttle["rates"])
# The tests' own database on the shared Redis server (throttling tests).
REDIS_URL = "redis://127.0.0.1:6379/7"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "tests.testapp.permissions.ObjectPermissionBackend",
]
