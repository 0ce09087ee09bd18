"""``DjangoChatKitServer`` and the per-process instance the endpoint uses."""

from __future__ import annotations

import functools
from typing import Any

from chatkit.server import ChatKitServer
from chatkit.store import AttachmentStore, Store
from django.core.signals import setting_changed

from chatkit_django.conf import chatkit_settings
from chatkit_django.context import ChatKitContext


class DjangoChatKitServer(ChatKitServer[ChatKitContext]):
    """A ``ChatKitServer`` wired to ``DjangoStore`` and ``DjangoAttachmentStore``.

    Subclass it, implement ``respond()``, and name the subclass in ``CHATKIT['SERVER_CLASS']``.
    """

    def __init__(
        self,
        store: Store[ChatKitContext] | None = None,
        attachment_store: AttachmentStore[ChatKitContext] | None = None,
    ) -> None:
        super().__init__(
            store=store if store is not None else chatkit_settings.STORE_CLASS(),
            attachment_store=(
                attachment_store
                if attachment_store is not None
                else chatkit_settings.ATTACHMENT_STORE_CLASS()
            ),
        )


@functools.cache
def get_server() -> ChatKitServer[ChatKitContext]:
    """The project's server, built once per process (rebuilt when ``CHATKIT`` changes)."""
    server_class = chatkit_settings.SERVER_CLASS
    if server_class is None:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("CHATKIT['SERVER_CLASS'] is not set; see chatkit_django.E004.")
    return server_class()


def _reset_server(*, setting: str, **kwargs: Any) -> None:
    if setting == "CHATKIT":
        get_server.cache_clear()


setting_changed.connect(_reset_server)
