"""Settings for the example project: SQLite, local files, no services, no API key needed."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
DATA_DIR = Path(os.environ.get("CHATKIT_DEMO_DATA", BASE_DIR.parent / ".demo"))
DATA_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "insecure-example-key-change-me")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS = [
    "daphne",  # first, so that runserver serves ASGI and SSE streams for real
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "chatkit_django",
    "example_project.demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_project.urls"
ASGI_APPLICATION = "example_project.asgi.application"
WSGI_APPLICATION = "example_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": DATA_DIR / "db.sqlite3",
    }
}

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "chatkit": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": DATA_DIR / "chatkit-files"},
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
MEDIA_ROOT = DATA_DIR / "media"
STATIC_URL = "static/"
LOGIN_URL = "admin:login"
LOGIN_REDIRECT_URL = "/"

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
USE_I18N = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CHATKIT = {
    "SERVER_CLASS": "example_project.demo.server.DemoServer",
    "ENTITY_SOURCES": ["example_project.demo.entities.ArticleSource"],
    # Per-type upload limits; {% chatkit_widget %} passes the same ones to ChatKit.js.
    "MAX_UPLOAD_BYTES": {
        "image/*": 10 * 1024 * 1024,
        "application/pdf": 25 * 1024 * 1024,
        "*": 5 * 1024 * 1024,
    },
    # Two agents, each with its own history for the same user (docs/guides/workspaces.md).
    "CONTEXT_FACTORY": "example_project.demo.context.chatkit_context",
    # --8<-- [start:throttles]
    # Per user (per address when anonymous), counted in CACHES["default"]: local memory in
    # the demo, so per process. With several workers, point THROTTLE_CACHE at Redis.
    "THROTTLE_RATES": {
        "respond": "20/min",  # messages, retries, actions: what spends the model
        "upload": "20/min",  # direct uploads and attachments.create
        "transcribe": "10/min",  # dictation
        "other": None,  # lists, loads, renames, deletes, feedback...: not throttled
    },
    # --8<-- [end:throttles]
    # --8<-- [start:background-answers]
    # A closed tab or a reload does not stop the answer: it finishes in the background and
    # is saved; the message so far is saved every 2 s, so a reload shows it while it runs.
    "ON_DISCONNECT": "finish",
    "PARTIAL_SAVE_SECONDS": 2.0,
    "BACKGROUND_MAX_SECONDS": 600.0,  # then it is cancelled, and saved as it is
    # --8<-- [end:background-answers]
}
