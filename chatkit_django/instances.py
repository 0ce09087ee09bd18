"""The per-process server, its stores, and the one way to an attachment's storage.

This module sits below ``models`` (it imports only the settings object), so the model's file
field, the signal receivers and the management commands reach the attachment store's
``get_storage`` hook without importing the modules that import the models.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import Storage, storages

from chatkit_django.conf import chatkit_settings, on_reload

if TYPE_CHECKING:
    from chatkit.server import ChatKitServer
    from chatkit.store import AttachmentStore, Store

    from chatkit_django.context import UserLike

logger = logging.getLogger(__name__)


@functools.cache
def get_server() -> ChatKitServer[Any]:
    """The project's server, built once per process (rebuilt when ``CHATKIT`` changes)."""
    server_class = chatkit_settings.SERVER_CLASS
    if server_class is None:
        raise ImproperlyConfigured("CHATKIT['SERVER_CLASS'] is not set; see chatkit_django.E004.")
    return server_class()


@functools.cache
def _standalone_stores() -> tuple[Store[Any], AttachmentStore[Any]]:
    # Without SERVER_CLASS (an admin-only site, a management command) the stores are built
    # from their own settings, once, as the server would build them.
    store = chatkit_settings.STORE_CLASS()
    attachment_store = chatkit_settings.ATTACHMENT_STORE_CLASS()
    if hasattr(attachment_store, "bind"):
        attachment_store.bind(store)
    return store, attachment_store


def get_store() -> Store[Any]:
    """The server's ``Store`` (whose ``has_access`` is the access rule), or ``STORE_CLASS()``."""
    if chatkit_settings.SERVER_CLASS is None:
        return _standalone_stores()[0]
    return get_server().store


def get_attachment_store() -> AttachmentStore[Any] | None:
    """The server's ``AttachmentStore``, or ``ATTACHMENT_STORE_CLASS()`` without a server."""
    if chatkit_settings.SERVER_CLASS is None:
        return _standalone_stores()[1]
    return get_server().attachment_store


def user_has_access(
    user: UserLike | None, obj: Any, action: str, store: Store[Any] | None = None
) -> bool:
    """Whether ``user`` may ``action`` ("view", "change", "delete") ``obj``, for sync code.

    The one adapter to the access rule: it runs ``store.has_access`` (by default the
    server's store; ``DjangoStore.has_access`` is the rule), never a copy of it. Owner only
    for a store without one.
    """
    if user is None or not user.is_authenticated:
        return False
    rule: Callable[[UserLike, Any, str], Awaitable[bool]] | None = getattr(
        store if store is not None else get_store(), "has_access", None
    )
    if rule is None:
        return bool(obj.owner_id == user.pk)
    return async_to_sync(rule)(user, obj, action)


def configured_storage() -> Storage:
    """The storage named by ``CHATKIT['STORAGE_ALIAS']``, else ``"chatkit"``, else ``"default"``."""
    alias = chatkit_settings.STORAGE_ALIAS
    if alias is None:
        alias = "chatkit" if "chatkit" in settings.STORAGES else "default"
    return storages[alias]


def attachment_storage(owner_id: Any = None) -> Storage:
    """Where the bytes of an attachment owned by ``owner_id`` live.

    The one resolver: it asks the attachment store's ``get_storage(owner_id)`` hook, and every
    path that touches bytes (the model's file field, the delete receiver, the views, the
    converters, the commands) comes through here.
    """
    get_storage: Callable[[Any], Storage] | None = getattr(
        get_attachment_store(), "get_storage", None
    )
    if get_storage is None:  # an AttachmentStore that is not ours
        return configured_storage()
    return get_storage(owner_id)


def delete_stored(storage: Storage, name: str) -> None:
    """Delete stored bytes, logging (not raising) a storage failure."""
    try:
        storage.delete(name)
    except Exception:
        logger.exception("Could not delete attachment bytes %r", name)


on_reload(get_server.cache_clear)
on_reload(_standalone_stores.cache_clear)
