"""``manage.py chatkit_erase_user alice`` for a data-protection (erasure) request."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from chatkit_django.deletion import delete_thread_queryset
from chatkit_django.management.commands._user import (
    add_user_argument,
    get_user,
    messages_elsewhere,
)
from chatkit_django.models import Attachment, Feedback, Thread, ThreadItem


class Command(BaseCommand):
    help = (
        "Erase everything ChatKit stores about one user: their threads (items, feedback, "
        "attachment files), the messages they sent in threads of others, their other "
        "attachments and the feedback they gave elsewhere. The user account itself is left "
        "to your project."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_user_argument(parser)
        parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")
        parser.add_argument(
            "--noinput", "--no-input", action="store_false", dest="interactive",
            help="do not ask for confirmation",
        )  # fmt: skip

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user(options)
        threads = Thread.objects.filter(owner_id=user.pk)
        counts = {
            "threads": threads.count(),
            "items": ThreadItem.objects.filter(thread__owner_id=user.pk).count(),
            "messages in threads of others": messages_elsewhere(user).count(),
            "attachments": Attachment.objects.filter(owner_id=user.pk).count(),
            "feedback": Feedback.objects.filter(user_id=user.pk).count(),
        }
        summary = ", ".join(f"{n} {what}" for what, n in counts.items())
        if options["dry_run"]:
            self.stdout.write(f"Would erase for {user.get_username()}: {summary}.")
            return
        if options["interactive"]:
            answer = input(f"Erase {summary} of {user.get_username()}? Type 'yes': ")
            if answer != "yes":
                raise CommandError("Erasure cancelled.")
        delete_thread_queryset(threads)
        with transaction.atomic():
            # Their messages in others' threads, with any feedback on them.
            messages = messages_elsewhere(user)
            Feedback.objects.filter(item__in=messages.values("pk")).delete()
            messages.only("pk").delete()
            # Attachments never attached, or attached to others' threads; bytes go on commit.
            Attachment.objects.filter(owner_id=user.pk).delete()
            Feedback.objects.filter(user_id=user.pk).delete()
        self.stdout.write(self.style.SUCCESS(f"Erased for {user.get_username()}: {summary}."))
