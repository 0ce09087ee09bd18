"""Settings of the scale harness's workers (benchmarks/scale.py): the benchmark app on
PostgreSQL, attachments on S3 (moto), throttles counted in Redis. Set by the harness
through ``SCALE_*`` environment variables."""

import json
import os

from benchmarks.endpoint_settings import *

ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
# A typical project's session middleware (the endpoint and the upload views also work
# without it: they read the session cookie themselves).
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
_pg = json.loads(os.environ.get("SCALE_PG", "{}"))
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("SCALE_PG_NAME", "chatkit_scale"),
        "USER": _pg.get("USER", "postgres"),
        "HOST": _pg.get("HOST", "127.0.0.1"),
        "PORT": _pg.get("PORT", "5432"),
        "OPTIONS": {
            "pool": {"min_size": 2, "max_size": int(os.environ.get("SCALE_POOL_MAX", "64"))}
        },
    }
}
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    "chatkit": json.loads(os.environ.get("SCALE_S3", "{}"))
    or {"BACKEND": "django.core.files.storage.InMemoryStorage"},
}
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "throttle": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": os.environ.get("SCALE_REDIS", "redis://127.0.0.1:6379/9"),
        "KEY_PREFIX": os.environ.get("SCALE_PREFIX", "chatkit-scale"),
    },
}
# Counted in Redis on every request, never reached: the harness measures, not the limits.
_rate = "100000/min"
CHATKIT = {
    "SERVER_CLASS": "benchmarks.scale_server.ScaleServer",
    "THROTTLE_CACHE": "throttle",
    "THROTTLE_RATES": {"respond": _rate, "upload": _rate, "transcribe": _rate, "other": _rate},
}
