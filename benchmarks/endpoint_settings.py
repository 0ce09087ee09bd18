"""Settings shared by both benchmark apps (Django endpoint and the FastAPI baseline).

Only what the endpoint needs: no middleware at all, so no request pays the thread hops of
sync-only middleware; the endpoint reads the session cookie itself with the async APIs.
"""

import os

SECRET_KEY = "bench"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
USE_TZ = True
ROOT_URLCONF = os.environ.get("BENCH_URLCONF", "benchmarks.endpoint_urls")
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "rest_framework",
    "chatkit_django",
]
MIDDLEWARE: list[str] = []
if os.environ.get("BENCH_DB") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("BENCH_PG_NAME", "chatkit_bench_endpoint"),
            "USER": "postgres",
            "HOST": "127.0.0.1",
            # Under ASGI each request runs its queries in a thread of its own, so without a
            # pool every request opens a connection; Django's psycopg pool reuses them.
            "OPTIONS": {"pool": {"min_size": 8, "max_size": 64}}
            if os.environ.get("BENCH_POOL", "1") == "1"
            else {},
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.path.join(os.environ.get("BENCH_DIR", "/tmp"), "bench.sqlite3"),
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 30},
        }
    }
STORAGES = {"default": {"BACKEND": "django.core.files.storage.InMemoryStorage"}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CHATKIT = {
    "SERVER_CLASS": "benchmarks.endpoint_server.BenchServer",
    "REQUEST_THREADS": int(os.environ.get("BENCH_REQUEST_THREADS", "8")),
}
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "ERROR"}}
