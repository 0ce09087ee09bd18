"""Deleting threads with everything in them, in batches, for the admin and the commands.

Items go with one plain DELETE per batch (the ORM's cascade would load every item's JSON);
attachments go through the ORM so their ``post_delete`` receiver removes the bytes once the
transaction commits (see ``signals.py``). ``thread_deleted`` is sent for each thread once
its deletion commits: never for a delete that is rolled back, and only after the outermost
transaction when the caller (the admin's delete view, say) holds one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING

from django.db import connections, router, transaction
from django.db.models import QuerySet

from chatkit_django import models
from chatkit_django.signals import thread_deleted

if TYPE_CHECKING:
    from chatkit_django.context import UserLike

#: Threads deleted per transaction by ``delete_thread_queryset``.
BATCH_SIZE = 200


def delete_threads(thread_ids: Sequence[str], *, user: UserLike | None = None) -> int:
    """Delete these threads, their items, feedback and attachments (bytes on commit).

    One transaction, a constant number of queries whatever the threads hold.
    Returns the number of threads deleted.
    """
    ids = list(thread_ids)
    if not ids:
        return 0
    db = router.db_for_write(models.Thread)
    with transaction.atomic(using=db):
        # Locked first, so that an item written meanwhile cannot commit between the item
        # and thread DELETEs and fail the delete (see DjangoStore._delete_thread_rows).
        deleted = list(
            models.Thread.objects.using(db)
            .select_for_update()
            .filter(pk__in=ids)
            .values_list("pk", flat=True)
        )
        models.Feedback.objects.using(db).filter(thread_id__in=ids).delete()
        delete_items(models.ThreadItem, ids, using=db)
        models.Attachment.objects.using(db).filter(thread_id__in=ids).delete()
        models.Thread.objects.using(db).filter(pk__in=deleted).delete()
        for thread_id in deleted:
            send_thread_deleted_on_commit(thread_id, user=user, using=db)
    return len(deleted)


def send_thread_deleted_on_commit(thread_id: str, *, user: UserLike | None, using: str) -> None:
    """Send ``thread_deleted`` once the current transaction on ``using`` commits.

    Receivers clean up elsewhere (search indexes, caches, files); a rolled-back delete must
    not reach them. Outside a transaction it is sent at once.
    """
    transaction.on_commit(
        partial(thread_deleted.send, sender=models.Thread, thread_id=thread_id, user=user),
        using=using,
    )


def delete_items(
    item_model: type[models.ThreadItem], thread_ids: Sequence[str], *, using: str
) -> None:
    """Delete the items of these threads with one plain DELETE.

    The ORM's cascade would load every item, its JSON included, so a long thread would cost
    queries and memory in proportion to its length. No ``post_delete`` is sent for items;
    ``thread_deleted`` is the signal to listen to.
    """
    meta = item_model._meta
    qn = connections[using].ops.quote_name
    placeholders = ", ".join(["%s"] * len(thread_ids))
    with connections[using].cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {qn(meta.db_table)} "
            f"WHERE {qn(meta.get_field('thread').column)} IN ({placeholders})",
            list(thread_ids),
        )


def iter_batches(
    queryset: QuerySet[models.Thread], batch_size: int = BATCH_SIZE
) -> Iterator[list[str]]:
    """Primary keys of ``queryset`` in batches, by keyset on pk (never all of them at once).

    Safe to delete each batch as it comes: the next batch starts after the last pk seen.
    """
    ids = queryset.order_by("pk").values_list("pk", flat=True)
    last = None
    while True:
        batch = list((ids.filter(pk__gt=last) if last is not None else ids)[:batch_size])
        if not batch:
            return
        last = batch[-1]
        yield batch


def delete_thread_queryset(
    queryset: QuerySet[models.Thread], *, user: UserLike | None = None, batch_size: int = BATCH_SIZE
) -> int:
    """Delete every thread of ``queryset``, one transaction per batch; returns the count."""
    return sum(delete_threads(batch, user=user) for batch in iter_batches(queryset, batch_size))
