"""The one reader of ``settings.CHATKIT``.

Access values as attributes of ``chatkit_settings``; keys listed in ``IMPORT_STRINGS`` are
dotted paths and come back imported. Values are cached and dropped again when Django sends
``setting_changed`` for ``CHATKIT`` (``override_settings`` in tests), as DRF's ``api_settings``
does. Anything else built from these settings (the server, entity sources, OpenAI clients)
registers its reset with ``on_reload``, so one receiver here drops every cache at once.
Importing this module does not touch Django settings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from django.core.signals import setting_changed
from django.utils.module_loading import import_string

if TYPE_CHECKING:
    from chatkit.server import ChatKitServer
    from chatkit.store import AttachmentStore, Store
    from openai import AsyncOpenAI
    from rest_framework.authentication import BaseAuthentication

    from chatkit_django.entities import EntitySource

SETTING_NAME = "CHATKIT"

DEFAULTS: dict[str, Any] = {
    # Server and stores
    "SERVER_CLASS": None,
    "STORE_CLASS": "chatkit_django.store.DjangoStore",
    "ATTACHMENT_STORE_CLASS": "chatkit_django.attachments.DjangoAttachmentStore",
    # Endpoint
    "AUTHENTICATION_CLASSES": None,
    "ALLOW_ANONYMOUS": False,
    "CONTEXT_FACTORY": None,
    "MAX_REQUEST_BYTES": 10 * 1024 * 1024,
    "KEEPALIVE_SECONDS": 15.0,
    "RELEASE_CONNECTIONS_SECONDS": 1.0,
    "STREAM_BUFFER_BYTES": 64 * 1024,
    "REQUEST_THREADS": 8,
    # Answers that outlive the connection (see chatkit_django.background)
    "ON_DISCONNECT": "cancel",
    "PARTIAL_SAVE_SECONDS": 2.0,
    "BACKGROUND_MAX_SECONDS": 600.0,
    # Throttles (None: the scope is not throttled)
    "THROTTLE_RATES": {"respond": None, "upload": None, "transcribe": None, "other": None},
    "THROTTLE_CACHE": "default",
    # Attachments
    "STORAGE_ALIAS": None,
    "MAX_UPLOAD_BYTES": 20 * 1024 * 1024,
    "MAX_ATTACHMENTS_PER_MESSAGE": 10,
    "ALLOWED_MIME_TYPES": [
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "application/pdf",
        "text/*",
        "application/json",
    ],
    "UPLOAD_TOKEN_MAX_AGE": 15 * 60,
    "PREVIEW_URL_MAX_AGE": 5 * 60,
    "PRESIGNED_UPLOADS": False,
    "UNATTACHED_MAX_AGE": 24 * 60 * 60,
    "BASE_URL": None,
    # Rich input
    "OPENAI_CLIENT_FACTORY": None,
    "TRANSCRIPTION_MODEL": "gpt-4o-transcribe",
    "MAX_TRANSCRIPTION_BYTES": 25 * 1024 * 1024,
    "ATTACHMENT_TEXT_MAX_CHARS": 50_000,
    "IMAGE_INPUT_AS_URL": False,
    "ENTITY_SEARCH_LIMIT": 10,
    "ENTITY_SOURCES": [],
}

# Keys whose values are dotted paths (or lists of them), imported on first access.
IMPORT_STRINGS = {
    "SERVER_CLASS",
    "STORE_CLASS",
    "ATTACHMENT_STORE_CLASS",
    "AUTHENTICATION_CLASSES",
    "CONTEXT_FACTORY",
    "OPENAI_CLIENT_FACTORY",
    "ENTITY_SOURCES",
}


def perform_import(value: Any, setting_name: str) -> Any:
    """Import a dotted path, or each dotted path in a list; pass other values through."""
    if value is None:
        return None
    if isinstance(value, str):
        return import_from_string(value, setting_name)
    if isinstance(value, list | tuple):
        return [import_from_string(item, setting_name) for item in value]
    return value


def import_from_string(value: str, setting_name: str) -> Any:
    """Import ``value``; any error while importing (a NameError or SyntaxError in the module
    too) becomes an ImportError naming the setting, so checks report it as E003."""
    try:
        return import_string(value)
    except Exception as e:
        cause = e.msg if isinstance(e, SyntaxError) else e
        msg = (
            f"Could not import {value!r} for CHATKIT[{setting_name!r}]. {type(e).__name__}: {cause}"
        )
        if not isinstance(e, ImportError):
            msg += where(e)
        raise ImportError(msg + ".") from e


def where(error: BaseException) -> str:
    """`` (file, line n)``: where a SyntaxError is, or where ``error`` was raised."""
    if isinstance(error, SyntaxError) and error.filename:
        return f" ({error.filename}, line {error.lineno})"
    tb = error.__traceback__
    if tb is None:
        return ""
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f" ({tb.tb_frame.f_code.co_filename}, line {tb.tb_lineno})"


class ChatKitSettings:
    """Lazy, cached view of ``settings.CHATKIT`` merged over ``DEFAULTS``."""

    # The type of each key, for the type checker only: these annotations make no class
    # attributes, so every read still goes through ``__getattr__`` (tests/package/test_conf.py keeps
    # them in step with DEFAULTS). Dotted paths are typed as what they import.
    SERVER_CLASS: Callable[[], ChatKitServer[Any]] | None  # a class built without arguments
    STORE_CLASS: type[Store[Any]]
    ATTACHMENT_STORE_CLASS: type[AttachmentStore[Any]]
    AUTHENTICATION_CLASSES: list[type[BaseAuthentication]] | None
    ALLOW_ANONYMOUS: bool
    CONTEXT_FACTORY: Callable[..., Any] | None  # (request), or (None, user=...); sync or async
    MAX_REQUEST_BYTES: int
    KEEPALIVE_SECONDS: float
    RELEASE_CONNECTIONS_SECONDS: float
    STREAM_BUFFER_BYTES: int
    REQUEST_THREADS: int
    ON_DISCONNECT: str  # "cancel" or "finish"
    PARTIAL_SAVE_SECONDS: float | None
    BACKGROUND_MAX_SECONDS: float
    THROTTLE_RATES: dict[str, str | None]
    THROTTLE_CACHE: str
    STORAGE_ALIAS: str | None
    MAX_UPLOAD_BYTES: int
    MAX_ATTACHMENTS_PER_MESSAGE: int
    ALLOWED_MIME_TYPES: list[str]
    UPLOAD_TOKEN_MAX_AGE: int
    PREVIEW_URL_MAX_AGE: int
    PRESIGNED_UPLOADS: bool
    UNATTACHED_MAX_AGE: int
    BASE_URL: str | None
    OPENAI_CLIENT_FACTORY: Callable[[], AsyncOpenAI] | None
    TRANSCRIPTION_MODEL: str
    MAX_TRANSCRIPTION_BYTES: int
    ATTACHMENT_TEXT_MAX_CHARS: int
    IMAGE_INPUT_AS_URL: bool
    ENTITY_SEARCH_LIMIT: int
    ENTITY_SOURCES: list[type[EntitySource]]

    def __init__(self, defaults: dict[str, Any] | None = None) -> None:
        self.defaults = defaults or DEFAULTS
        self._cached: set[str] = set()

    @property
    def user_settings(self) -> dict[str, Any]:
        if not hasattr(self, "_user_settings"):
            from django.conf import settings

            value = getattr(settings, SETTING_NAME, {})
            # checks.py reports a non-dict CHATKIT; here we fall back to the defaults.
            self._user_settings = value if isinstance(value, dict) else {}
        return self._user_settings

    if not TYPE_CHECKING:  # hidden from the checker, so a misspelt key is a type error

        def __getattr__(self, attr: str) -> Any:
            if attr not in self.defaults:
                raise AttributeError(f"Invalid CHATKIT setting: {attr!r}")
            value = self.user_settings.get(attr, self.defaults[attr])
            if attr in IMPORT_STRINGS:
                value = perform_import(value, attr)
            self._cached.add(attr)
            setattr(self, attr, value)
            return value

    def reload(self) -> None:
        for attr in self._cached:
            delattr(self, attr)
        self._cached.clear()
        if hasattr(self, "_user_settings"):
            delattr(self, "_user_settings")


chatkit_settings = ChatKitSettings()

ResetT = TypeVar("ResetT", bound=Callable[[], object])

#: Resets to run when ``CHATKIT`` changes, in registration order (see ``on_reload``).
_resets: list[Callable[[], object]] = []


def on_reload(reset: ResetT) -> ResetT:
    """Run ``reset()`` whenever ``CHATKIT`` changes; usable as a decorator.

    For anything cached from these settings outside ``chatkit_settings``, e.g.
    ``on_reload(get_server.cache_clear)``. Registering the same reset twice runs it once.
    """
    if reset not in _resets:
        _resets.append(reset)
    return reset


def reload_chatkit_settings(*, setting: str, **kwargs: Any) -> None:
    """The one ``setting_changed`` receiver: reload the settings, then every registered reset."""
    if setting == SETTING_NAME:
        chatkit_settings.reload()
        for reset in _resets:
            reset()


setting_changed.connect(reload_chatkit_settings, dispatch_uid="chatkit_reload_settings")
