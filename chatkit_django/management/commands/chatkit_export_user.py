"""``manage.py chatkit_export_user alice > alice.json`` for a data-protection (access) request."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from chatkit_django import export
from chatkit_django.management.commands._user import add_user_argument, get_user
from chatkit_django.models import Attachment, Feedback, Thread


class Command(BaseCommand):
    help = (
        "Export everything ChatKit stores about one user: their threads with every item "
        "(JSON as the SDK serialises it, or Markdown), their attachments' metadata and the "
        "feedback they gave."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_user_argument(parser)
        parser.add_argument("--format", choices=["json", "markdown"], default="json")
        parser.add_argument("--output", "-o", metavar="FILE", help="write here, not to stdout")

    def chunks(self, user: Any, fmt: str) -> Any:
        threads = Thread.objects.filter(owner=user)
        if fmt == "markdown":
            return export.iter_markdown(threads)
        attachments = list(
            Attachment.objects.filter(owner=user)
            .order_by("created_at", "pk")
            .values_list("data", flat=True)
        )
        feedback = [
            {
                "thread_id": thread_id,
                "item_id": item_id,
                "kind": kind,
                "created_at": created_at.isoformat(),
            }
            for thread_id, item_id, kind, created_at in Feedback.objects.filter(user=user)
            .order_by("created_at", "pk")
            .values_list("thread_id", "item_id", "kind", "created_at")
            .iterator()
        ]
        return export.iter_json(
            threads,
            user={"pk": str(user.pk), "username": user.get_username()},
            attachments=attachments,
            feedback=feedback,
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user(options)
        chunks = self.chunks(user, options["format"])
        if options["output"]:
            with open(options["output"], "w", encoding="utf-8") as f:
                f.writelines(chunks)
            self.stderr.write(f"Wrote {options['output']}.")
        else:
            for chunk in chunks:
                self.stdout.write(chunk, ending="")
