"""Signals chatkit_django sends, and the receivers it connects for itself."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import Signal, receiver

from chatkit_django.instances import attachment_storage, delete_stored

# Sent once the deletion of a thread and everything in it commits (never for a rolled-back
# delete), through the store, the admin or the commands.
# Arguments: sender (the Thread model), thread_id (str), user (who deleted it, or None).
thread_deleted = Signal()


@receiver(post_delete, sender="chatkit_django.Attachment", dispatch_uid="chatkit_attachment_bytes")
def delete_attachment_bytes(sender: Any, instance: Any, using: str, **kwargs: Any) -> None:
    """Delete an attachment's bytes once the deletion of its row commits.

    A rolled-back delete keeps both the row and the file. The storage is the one the
    attachment store's ``get_storage`` picks for the row's owner, as for every other access.
    """
    name = instance.file.name
    if name:
        storage = attachment_storage(instance.owner_id)
        transaction.on_commit(partial(delete_stored, storage, name), using=using)
