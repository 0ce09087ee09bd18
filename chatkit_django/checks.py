"""System checks for ``settings.CHATKIT`` and the deployment around it.

Every id is listed in docs/reference/checks.md; tests assert each one.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.core.management import get_commands

from chatkit_django.conf import DEFAULTS, IMPORT_STRINGS, SETTING_NAME, perform_import

# Apps whose runserver command serves ASGI (Channels 4 left its runserver to daphne).
ASGI_RUNSERVERS = ("daphne",)
POSITIVE_NUMBERS = (
    "MAX_REQUEST_BYTES",
    "KEEPALIVE_SECONDS",
    "STREAM_BUFFER_BYTES",
    "MAX_UPLOAD_BYTES",  # or a mapping of MIME patterns: see _check_upload_limits
    "UPLOAD_TOKEN_MAX_AGE",
    "PREVIEW_URL_MAX_AGE",
    "UNATTACHED_MAX_AGE",
    "MAX_TRANSCRIPTION_BYTES",
    "ATTACHMENT_TEXT_MAX_CHARS",
    "ENTITY_SEARCH_LIMIT",
    "BACKGROUND_MAX_SECONDS",
)
# Positive numbers that must be whole (counts).
POSITIVE_INTEGERS = ("MAX_ATTACHMENTS_PER_MESSAGE", "REQUEST_THREADS")
# Positive numbers that may also be None (the feature off).
OPTIONAL_POSITIVE_NUMBERS = ("RELEASE_CONNECTIONS_SECONDS", "PARTIAL_SAVE_SECONDS")
ON_DISCONNECT_CHOICES = ("cancel", "finish")


def _user_settings() -> Any:
    return getattr(settings, SETTING_NAME, {})


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Error | Warning]:
    user = _user_settings()
    if not isinstance(user, dict):
        return [
            Error(
                f"CHATKIT should be a dict, not {type(user).__name__}.",
                hint="Set CHATKIT = {'SERVER_CLASS': 'myproject.chat.MyServer'} in your settings.",
                id="chatkit_django.E001",
            )
        ]
    errors: list[Error | Warning] = []
    unknown = sorted(set(user) - set(DEFAULTS))
    if unknown:
        errors.append(
            Error(
                f"Unknown CHATKIT key(s): {', '.join(unknown)}.",
                hint=f"Valid keys are: {', '.join(sorted(DEFAULTS))}.",
                id="chatkit_django.E002",
            )
        )
    imported: dict[str, Any] = {}
    for key in sorted(IMPORT_STRINGS):
        value = user.get(key, DEFAULTS[key])
        try:
            imported[key] = perform_import(value, key)
        except ImportError as e:
            errors.append(
                Error(
                    str(e),
                    hint=f"Point CHATKIT[{key!r}] at an importable dotted path.",
                    id="chatkit_django.E003",
                )
            )
    errors.extend(_check_server_class(imported, "SERVER_CLASS" in imported))
    errors.extend(_check_context_factory(imported.get("CONTEXT_FACTORY")))
    errors.extend(_check_entity_sources(imported.get("ENTITY_SOURCES")))
    for key in POSITIVE_NUMBERS + OPTIONAL_POSITIVE_NUMBERS + POSITIVE_INTEGERS:
        value = user.get(key, DEFAULTS[key])
        if value is None and key in OPTIONAL_POSITIVE_NUMBERS:
            continue
        if key == "MAX_UPLOAD_BYTES" and isinstance(value, dict):
            continue
        kind, types = ("integer", int) if key in POSITIVE_INTEGERS else ("number", int | float)
        if isinstance(value, bool) or not isinstance(value, types) or value <= 0:
            errors.append(
                Error(
                    f"CHATKIT[{key!r}] should be a positive {kind}, not {value!r}.",
                    id="chatkit_django.E005",
                )
            )
    errors.extend(_check_upload_limits(user.get("MAX_UPLOAD_BYTES", DEFAULTS["MAX_UPLOAD_BYTES"])))
    mime_types = user.get("ALLOWED_MIME_TYPES", DEFAULTS["ALLOWED_MIME_TYPES"])
    if not isinstance(mime_types, list | tuple) or not all(
        isinstance(m, str) and m.count("/") == 1 for m in mime_types
    ):
        errors.append(
            Error(
                "CHATKIT['ALLOWED_MIME_TYPES'] should be a list of MIME types such as "
                f"'image/png' or 'image/*', not {mime_types!r}.",
                id="chatkit_django.E006",
            )
        )
    alias = user.get("STORAGE_ALIAS")
    if alias is not None and alias not in settings.STORAGES:
        errors.append(
            Error(
                f"CHATKIT['STORAGE_ALIAS'] is {alias!r}, which is not a key of STORAGES.",
                hint=f"Add STORAGES[{alias!r}] or use one of: {', '.join(settings.STORAGES)}.",
                id="chatkit_django.E007",
            )
        )
    else:
        errors.extend(_check_attachment_urls(user))
    errors.extend(_check_throttles(user))
    on_disconnect = user.get("ON_DISCONNECT", DEFAULTS["ON_DISCONNECT"])
    if on_disconnect not in ON_DISCONNECT_CHOICES:
        errors.append(
            Error(
                f"CHATKIT['ON_DISCONNECT'] should be 'cancel' or 'finish', not {on_disconnect!r}.",
                hint="'cancel' stops the answer when the client goes away, 'finish' finishes "
                "it in the background.",
                id="chatkit_django.E011",
            )
        )
    return errors


def _check_context_factory(factory: Any) -> list[Error | Warning]:
    """Every request calls ``factory(request)``: say now if it cannot be, not with a 500 per
    request. (Server-started conversations call ``factory(None, user=..., scope=...)``; a
    factory without those arguments is fine for a project that never starts one, and
    ``make_user_context`` names the problem when one is started.)"""
    if factory is None:
        return []
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return []  # a callable Python cannot inspect (a builtin): nothing to say
    name = getattr(factory, "__qualname__", repr(factory))
    try:
        signature.bind(None)
    except TypeError:
        return [
            Error(
                f"CHATKIT['CONTEXT_FACTORY'] {name} cannot be called with the request alone.",
                hint="Define it as 'def factory(request, user=None, scope=None)'.",
                id="chatkit_django.E012",
            )
        ]
    return []


def _check_upload_limits(value: Any) -> list[Error | Warning]:
    """``MAX_UPLOAD_BYTES`` as a mapping: MIME patterns to positive whole numbers of bytes
    (E040), with a ``"*"`` fallback (W040). A number is E005's, with the other sizes."""
    from chatkit_django.upload_limits import (
        DEFAULT_MAX_UPLOAD_BYTES,
        is_valid_limit,
        is_valid_pattern,
        normalize_pattern,
    )

    if not isinstance(value, dict):
        return []  # a number: E005's
    problems = []
    if not value:
        problems.append("it is empty")
    seen: dict[str, Any] = {}
    for pattern, limit in value.items():
        if not is_valid_pattern(pattern):
            problems.append(f"{pattern!r} is not a MIME pattern ('type/subtype', 'type/*' or '*')")
            continue
        if not is_valid_limit(limit):
            problems.append(f"the limit for {pattern!r} is {limit!r}, not a positive integer")
        normalized = normalize_pattern(pattern)
        if normalized in seen:
            problems.append(f"{pattern!r} repeats {seen[normalized]!r}")
        seen[normalized] = pattern
    errors: list[Error | Warning] = [
        Error(
            f"CHATKIT['MAX_UPLOAD_BYTES']: {problem}.",
            hint="Map MIME patterns to sizes in bytes, e.g. "
            "{'image/*': 10 * 2**20, 'application/pdf': 25 * 2**20, '*': 5 * 2**20}.",
            id="chatkit_django.E040",
        )
        for problem in problems
    ]
    if value and "*" not in seen:
        errors.append(
            Warning(
                "CHATKIT['MAX_UPLOAD_BYTES'] has no '*' entry: files of a type no pattern "
                f"matches are limited to the default, {DEFAULT_MAX_UPLOAD_BYTES} bytes.",
                hint="Add a '*' entry with the limit for every other type.",
                id="chatkit_django.W040",
            )
        )
    return errors


def _check_attachment_urls(user: dict[str, Any]) -> list[Error | Warning]:
    from urllib.parse import urlsplit

    from chatkit_django.attachments import can_presign, get_attachment_storage
    from chatkit_django.instances import configured_storage

    errors: list[Error | Warning] = []
    base_url = user.get("BASE_URL")
    if base_url is not None and not (
        isinstance(base_url, str)
        and urlsplit(base_url).scheme in ("http", "https")
        and urlsplit(base_url).netloc
    ):
        errors.append(
            Error(
                "CHATKIT['BASE_URL'] should be an absolute http(s) URL such as "
                f"'https://chat.example.com', not {base_url!r}.",
                hint="Or set it to None to build attachment URLs from each request.",
                id="chatkit_django.E009",
            )
        )
    try:
        storage = configured_storage()
    except (ImproperlyConfigured, ImportError) as e:
        # A backend whose optional dependency is missing (S3Storage without boto3...).
        errors.append(
            Error(
                f"The attachment storage cannot be loaded: {e}",
                hint=f"{extra_hint(e)}Or point CHATKIT['STORAGE_ALIAS'] at a storage that loads.",
                id="chatkit_django.E010",
            )
        )
        return errors
    # The attachment store's get_storage() hook; a server that cannot be built is E003's.
    with contextlib.suppress(Exception):
        storage = get_attachment_storage()
    if user.get("PRESIGNED_UPLOADS") and not can_presign(storage):
        errors.append(
            Warning(
                "CHATKIT['PRESIGNED_UPLOADS'] is on, but the attachment storage is not "
                "django-storages' S3Storage with signed URLs: uploads go through the app.",
                hint="Use storages.backends.s3.S3Storage (querystring_auth=True, no "
                "custom_domain; pip install 'chatkit-django[s3]') for attachments, or set "
                "PRESIGNED_UPLOADS to False.",
                id="chatkit_django.W004",
            )
        )
    return errors


def extra_hint(error: BaseException) -> str:
    """The pip command for the extra that ``error`` shows missing, if it shows one."""
    if "boto" in str(error).lower():  # django-storages: "Could not load Boto3's S3 bindings"
        return "Install boto3 with the s3 extra: pip install 'chatkit-django[s3]'. "
    return ""


def _check_throttles(user: dict[str, Any]) -> list[Error | Warning]:
    """``THROTTLE_RATES`` holds DRF rate strings (or None) and ``THROTTLE_CACHE`` exists."""
    from chatkit_django.throttling import RATE_RE, SCOPES

    errors: list[Error | Warning] = []
    rates = user.get("THROTTLE_RATES", DEFAULTS["THROTTLE_RATES"])
    if not isinstance(rates, dict):
        problems = [f"CHATKIT['THROTTLE_RATES'] should be a dict of scope to rate, not {rates!r}."]
        rates = {}
    else:
        problems = [
            f"CHATKIT['THROTTLE_RATES'][{scope!r}] is {rate!r}, which is not a rate."
            for scope, rate in rates.items()
            if rate is not None and not (isinstance(rate, str) and RATE_RE.fullmatch(rate))
        ]
    errors.extend(
        Error(
            problem,
            hint="Write rates as DRF does: '30/min', '1000/day' (s, min, hour or day), "
            "or None for no limit.",
            id="chatkit_django.E030",
        )
        for problem in problems
    )
    unknown = sorted(set(rates) - set(SCOPES), key=str)
    if unknown:
        errors.append(
            Warning(
                f"CHATKIT['THROTTLE_RATES'] has rates for unknown scope(s): "
                f"{', '.join(map(repr, unknown))}; nothing is counted in them.",
                hint=f"The scopes are: {', '.join(SCOPES)}. Ignore this if your "
                "get_throttle_scope() or a view's throttle_scope uses the name.",
                id="chatkit_django.W030",
            )
        )
    alias = user.get("THROTTLE_CACHE", DEFAULTS["THROTTLE_CACHE"])
    if not isinstance(alias, str) or alias not in settings.CACHES:
        errors.append(
            Error(
                f"CHATKIT['THROTTLE_CACHE'] is {alias!r}, which is not a key of CACHES.",
                hint=f"Add CACHES[{alias!r}] or use one of: {', '.join(settings.CACHES)}.",
                id="chatkit_django.E031",
            )
        )
    return errors


def _check_entity_sources(sources: Any) -> list[Error]:
    """Every ``ENTITY_SOURCES`` entry is an ``EntitySource`` with a unique, usable name."""
    from chatkit_django.entities import EntitySource

    errors: list[Error] = []
    names: set[str] = set()
    for source in sources or []:
        if not (isinstance(source, type) and issubclass(source, EntitySource)):
            problem = "is not a subclass of chatkit_django.entities.EntitySource"
        elif not isinstance(source.name, str) or not source.name or ":" in source.name:
            problem = f"has name {source.name!r}; it needs a non-empty name without ':'"
        elif source.name in names:
            problem = f"has the name {source.name!r} of another source"
        else:
            names.add(source.name)
            continue
        errors.append(
            Error(
                f"CHATKIT['ENTITY_SOURCES'] entry {source!r} {problem}.",
                hint="Subclass EntitySource and give each source its own name; see "
                "docs/guides/accept-rich-user-input.md.",
                id="chatkit_django.E020",
            )
        )
    return errors


def _check_server_class(imported: dict[str, Any], importable: bool) -> list[Error]:  # noqa: FBT001
    from chatkit.server import ChatKitServer

    if not importable:
        return []
    server_class = imported["SERVER_CLASS"]
    if server_class is None:
        return [
            Error(
                "CHATKIT['SERVER_CLASS'] is not set.",
                hint="Subclass chatkit_django.server.DjangoChatKitServer, implement respond(), "
                "and set CHATKIT['SERVER_CLASS'] to its dotted path.",
                id="chatkit_django.E004",
            )
        ]
    if not (isinstance(server_class, type) and issubclass(server_class, ChatKitServer)):
        return [
            Error(
                f"CHATKIT['SERVER_CLASS'] {server_class!r} is not a subclass of "
                "chatkit.server.ChatKitServer.",
                hint="Subclass chatkit_django.server.DjangoChatKitServer and point "
                "SERVER_CLASS at it.",
                id="chatkit_django.E008",
            )
        ]
    return []


@register(Tags.compatibility)
def check_deployment(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    warnings: list[Warning] = []
    asgi = bool(getattr(settings, "ASGI_APPLICATION", None)) or (
        "daphne" in settings.INSTALLED_APPS
    )
    runserver = get_commands().get("runserver")
    if not asgi:
        problem = (
            "this project is not set up for ASGI: under WSGI each stream holds a worker and "
            "is buffered to the end."
        )
    elif settings.DEBUG and runserver not in ASGI_RUNSERVERS:
        # ASGI_APPLICATION alone does not change runserver; the usual mistake in development.
        problem = (
            f"manage.py runserver (from {runserver!r}) is Django's WSGI server: each answer "
            "is buffered and arrives whole, at the end."
        )
    else:
        problem = ""
    if problem:
        warnings.append(
            Warning(
                f"chatkit_django streams Server-Sent Events, but {problem}",
                hint="Add 'daphne' first in INSTALLED_APPS (its runserver serves ASGI) and set "
                "ASGI_APPLICATION; or serve with another ASGI server (uvicorn) and silence "
                "this warning.",
                id="chatkit_django.W001",
            )
        )
    if asgi:
        for alias, db in settings.DATABASES.items():
            if db.get("CONN_MAX_AGE"):
                warnings.append(
                    Warning(
                        f"DATABASES[{alias!r}]['CONN_MAX_AGE'] is {db['CONN_MAX_AGE']!r} "
                        "under ASGI.",
                        hint="Django's async docs advise CONN_MAX_AGE = 0 under ASGI; use "
                        "a pooler (PgBouncer, or OPTIONS['pool'] with psycopg) instead.",
                        id="chatkit_django.W002",
                    )
                )
    warnings.extend(_check_pool_size())
    return warnings


def _check_pool_size() -> list[Warning]:
    """psycopg pools smaller than REQUEST_THREADS: each of chatkit_django.asgi's threads uses one."""
    user = _user_settings()
    threads = (
        user.get("REQUEST_THREADS", DEFAULTS["REQUEST_THREADS"]) if isinstance(user, dict) else 0
    )
    if isinstance(threads, bool) or not isinstance(threads, int) or threads <= 0:
        return []  # E005
    warnings: list[Warning] = []
    for alias, db in settings.DATABASES.items():
        options_: dict[str, Any] = db.get("OPTIONS") or {}  # type: ignore[assignment]  # loose stubs
        engine: str = db.get("ENGINE", "")  # type: ignore[assignment]  # loose stubs
        pool = options_.get("pool")
        if not pool or not engine.endswith("postgresql"):
            continue
        options = pool if isinstance(pool, dict) else {}
        # psycopg's defaults: min_size 4; max_size None, i.e. min_size.
        size = options.get("max_size") or options.get("min_size", 4)
        if isinstance(size, int) and size < threads:
            warnings.append(
                Warning(
                    f"DATABASES[{alias!r}]'s connection pool holds at most {size} connections, "
                    f"fewer than CHATKIT['REQUEST_THREADS'] ({threads}).",
                    hint="Under chatkit_django.asgi each request thread may hold a connection, so "
                    "requests would wait for one and answer 503 server_busy. Set "
                    f"OPTIONS['pool']['max_size'] to {threads} or more (or lower "
                    "REQUEST_THREADS); silence this if you do not serve with "
                    "chatkit_django.asgi. See Deploy streaming.",
                    id="chatkit_django.W050",
                )
            )
    return warnings


@register(Tags.security)
def check_security(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    user = _user_settings()
    if isinstance(user, dict) and user.get("ALLOW_ANONYMOUS"):
        return [
            Warning(
                "CHATKIT['ALLOW_ANONYMOUS'] is True: anyone can reach the ChatKit endpoint.",
                hint="Make sure DjangoStore.get_user() maps anonymous requests to a user of "
                "their own, or their threads would be shared.",
                id="chatkit_django.W003",
            )
        ]
    return []
