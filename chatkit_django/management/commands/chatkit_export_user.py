"""``manage.py chatkit_export_user alice > alice.json`` for a data-protection (access) request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from django.core.management.base import BaseCommand, CommandParser
from django.db.models import QuerySet

from chatkit_django import export
from chatkit_django.management.commands._user import (
    add_user_argument,
    get_user,
    messages_elsewhere,
)
from chatkit_django.models import Attachment, Feedback, Thread, ThreadItem
from chatkit_django.store import dump

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser


class Command(BaseCommand):
    help = (
        "Export everything ChatKit stores about one user: their threads with every item "
        "(JSON as the SDK serialises it, or Markdown), the messages they sent in threads of "
        "others, their attachments' metadata and the feedback they gave."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_user_argument(parser)
        parser.add_argument("--format", choices=["json", "markdown"], default="json")
        parser.add_argument("--output", "-o", metavar="FILE", help="write here, not to stdout")
        parser.add_argument(
            "--scope",
            help="only this scope (workspace, agent, tenant: DjangoStore.get_scope); "
            '"" for the unscoped threads',
        )

    def chunks(self, user: AbstractBaseUser, fmt: str, scope: str | None = None) -> Iterator[str]:
        threads = Thread.objects.filter(owner_id=user.pk)
        attachments = Attachment.objects.filter(owner_id=user.pk)
        feedback = Feedback.objects.filter(user_id=user.pk)
        messages = messages_elsewhere(user)
        extra = {}
        if scope is not None:
            threads = threads.filter(scope=scope)
            attachments = attachments.filter(scope=scope)
            feedback = feedback.filter(thread__scope=scope)
            messages = messages.filter(thread__scope=scope)
            extra["scope"] = scope
        if fmt == "markdown":
            return self.markdown(threads, messages, attachments, feedback)
        return export.iter_json(
            threads,
            user={"pk": str(user.pk), "username": user.get_username()},
            **extra,
            messages=[dump(item) for item in export.iter_items(messages)],
            attachments=list(
                attachments.order_by("created_at", "pk").values_list("data", flat=True)
            ),
            feedback=[
                {
                    "thread_id": thread_id,
                    "item_id": item_id,
                    "kind": kind,
                    "created_at": created_at.isoformat(),
                }
                for thread_id, item_id, kind, created_at in feedback.order_by("created_at", "pk")
                .values_list("thread_id", "item_id", "kind", "created_at")
                .iterator()
            ],
        )

    def markdown(
        self,
        threads: QuerySet[Thread],
        messages: QuerySet[ThreadItem],
        attachments: QuerySet[Attachment],
        feedback: QuerySet[Feedback],
    ) -> Iterator[str]:
        """The threads, then the user's messages elsewhere, attachments and feedback."""
        yield from export.iter_markdown(threads)
        sections = [
            ("Messages in threads of others", export.items_markdown(export.iter_items(messages))),
            ("Attachments", export.attachments_markdown(attachments)),
            ("Feedback given", export.feedback_markdown(feedback)),
        ]
        for title, lines in sections:
            yield f"\n---\n\n# {title}\n\n"
            empty = True
            for line in lines:
                empty = False
                yield line
            if empty:
                yield "None.\n"

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user(options)
        chunks = self.chunks(user, options["format"], options["scope"])
        if options["output"]:
            with open(options["output"], "w", encoding="utf-8") as f:
                f.writelines(chunks)
            self.stderr.write(f"Wrote {options['output']}.")
        else:
            for chunk in chunks:
                self.stdout.write(chunk, ending="")
