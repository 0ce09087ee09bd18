"""``manage.py chatkit_purge --older-than 365d`` / ``--inactive-for 90d``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from chatkit_django._internal.durations import parse_age
from chatkit_django.deletion import BATCH_SIZE, delete_threads, iter_batches
from chatkit_django.models import Attachment, Feedback, Thread, ThreadItem


class Command(BaseCommand):
    help = (
        "Delete threads (with their items, feedback and attachment files) created longer ago "
        "than --older-than, or without activity for --inactive-for. Deletes in batches, one "
        "transaction each; --dry-run only counts."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than", metavar="AGE", help="created before now - AGE (e.g. 365d, 12w)"
        )
        parser.add_argument(
            "--inactive-for", metavar="AGE", help="last activity before now - AGE (e.g. 90d)"
        )
        parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")
        parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, metavar="N")

    def get_queryset(self, options: dict[str, Any]) -> Any:
        """The threads to purge. Override to keep some (e.g. those under legal hold)."""
        if not options["older_than"] and not options["inactive_for"]:
            raise CommandError("Give --older-than AGE and/or --inactive-for AGE.")
        now = timezone.now()
        queryset = Thread.objects.all()
        try:
            if options["older_than"]:
                queryset = queryset.filter(created_at__lt=now - parse_age(options["older_than"]))
            if options["inactive_for"]:
                queryset = queryset.filter(updated_at__lt=now - parse_age(options["inactive_for"]))
        except ValueError as e:
            raise CommandError(str(e)) from None
        return queryset

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        queryset = self.get_queryset(options)
        if options["dry_run"]:
            ids = queryset.values("pk")
            self.stdout.write(
                f"Would delete {queryset.count()} thread(s) with "
                f"{ThreadItem.objects.filter(thread_id__in=ids).count()} item(s), "
                f"{Attachment.objects.filter(thread_id__in=ids).count()} attachment(s) and "
                f"{Feedback.objects.filter(thread_id__in=ids).count()} feedback row(s)."
            )
            return
        total = 0
        for batch in iter_batches(queryset, options["batch_size"]):
            total += delete_threads(batch)
            if options["verbosity"] > 1:
                self.stdout.write(f"Deleted {total} thread(s) so far.")
        self.stdout.write(self.style.SUCCESS(f"Deleted {total} thread(s)."))
