"""``DjangoAttachmentStore``: attachment bytes on a Django storage."""

from __future__ import annotations

from typing import Any

from chatkit.store import AttachmentStore
from django.conf import settings
from django.core.files.storage import Storage, storages

from chatkit_django.conf import chatkit_settings
from chatkit_django.context import ChatKitContext
from chatkit_django.ids import generate_id


def get_attachment_storage() -> Storage:
    """The storage named by ``CHATKIT['STORAGE_ALIAS']``, else ``"chatkit"``, else ``"default"``."""
    alias = chatkit_settings.STORAGE_ALIAS
    if alias is None:
        alias = "chatkit" if "chatkit" in settings.STORAGES else "default"
    return storages[alias]


class DjangoAttachmentStore(AttachmentStore[ChatKitContext]):
    """Attachment bytes on the configured Django storage."""

    def __init__(self, **options: Any) -> None:
        if options:
            raise TypeError(f"Invalid option(s) for {type(self).__name__}: {', '.join(options)}")

    def generate_attachment_id(self, mime_type: str, context: ChatKitContext) -> str:
        return generate_id("attachment")

    async def delete_attachment(self, attachment_id: str, context: ChatKitContext) -> None:
        # Filled in by the attachments work: bytes go after the row's transaction commits.
        return None
