"""``manage.py chatkit_cleanup``: delete attachments never attached to a message."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from chatkit_django.attachments import get_django_attachment_store
from chatkit_django.conf import chatkit_settings
from chatkit_django.instances import delete_stored
from chatkit_django.models import Attachment

BATCH_SIZE = 500


class Command(BaseCommand):
    help = (
        "Delete attachments that were never attached to a message (no thread) and are older "
        "than CHATKIT['UNATTACHED_MAX_AGE'] seconds, with their bytes. Abandoned two-phase "
        "uploads end up here too. Then delete stray presigned uploads: objects under the "
        "upload prefix that no pending attachment names, older than "
        "CHATKIT['UPLOAD_TOKEN_MAX_AGE'] seconds (a presigned URL used again after its "
        "upload was confirmed or deleted)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--max-age",
            type=int,
            default=None,
            help="Age in seconds (default: CHATKIT['UNATTACHED_MAX_AGE']).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Only print what would be deleted.",
        )

    def get_queryset(self, max_age: int) -> Any:
        """Attachments to delete. Override to keep some (e.g. those a project links elsewhere)."""
        cutoff = timezone.now() - timedelta(seconds=max_age)
        return Attachment.objects.filter(thread__isnull=True, created_at__lt=cutoff)

    def handle(self, *args: Any, max_age: int | None, dry_run: bool, **options: Any) -> None:
        if max_age is None:
            max_age = chatkit_settings.UNATTACHED_MAX_AGE
        queryset = self.get_queryset(max_age)
        count = queryset.count()
        size = queryset.aggregate(total=Sum("size"))["total"] or 0
        verbose = options["verbosity"] >= 2
        if dry_run or verbose:
            for row in queryset.order_by("created_at").only("id", "name", "size", "created_at"):
                self.stdout.write(
                    f"{row.pk}  {row.size or 0} bytes  {row.created_at:%Y-%m-%d %H:%M}  {row.name}"
                )
        strays = self.stray_uploads()
        if dry_run or verbose:
            for _storage, name in strays:
                self.stdout.write(f"stray upload  {name}")
        if dry_run:
            self.stdout.write(
                f"Would delete {count} unattached attachment(s), {size} bytes "
                f"(older than {max_age} s), and {len(strays)} stray upload(s). "
                "Nothing was deleted (--dry-run)."
            )
            return
        deleted = 0
        while True:
            ids = list(queryset.values_list("pk", flat=True)[:BATCH_SIZE])
            if not ids:
                break
            # Each batch commits on its own; its bytes go once it has (see signals.py).
            with transaction.atomic():
                deleted += (
                    Attachment.objects.filter(pk__in=ids).delete()[1].get(Attachment._meta.label, 0)
                )
        for storage, name in strays:
            delete_stored(storage, name)
        self.stdout.write(
            self.style.SUCCESS(
                f"Deleted {deleted} unattached attachment(s) and their bytes, {size} bytes "
                f"(older than {max_age} s), and {len(strays)} stray upload(s)."
            )
        )

    def stray_uploads(self) -> list[tuple[Any, str]]:
        """``(storage, name)`` of presigned uploads nothing reads, older than
        ``UPLOAD_TOKEN_MAX_AGE`` (their URL has expired: no PUT can write them again)."""
        store = get_django_attachment_store()
        max_age = chatkit_settings.UPLOAD_TOKEN_MAX_AGE
        return [
            (storage, name)
            for storage in store.get_upload_storages()
            for name in store.stray_uploads(storage, max_age)
        ]
