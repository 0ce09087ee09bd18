"""``manage.py chatkit_send --user alice "Your report is ready"``: a message from the server.

Starts a thread for the user (or adds to ``--thread``), runs the server's ``respond()`` to the
end (not with ``--no-respond``), then prints the thread id and the answer. Errors exit with
status 1 and one line on stderr.
"""

from __future__ import annotations

import json
from typing import Any

from chatkit.store import NotFoundError
from chatkit.types import AssistantMessageItem
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from rest_framework.exceptions import APIException

from chatkit_django.conversations import send
from chatkit_django.management.commands._user import get_user


class Command(BaseCommand):
    help = (
        "Send a message to a user's ChatKit thread as if they had typed it: a new thread, or "
        "--thread; the server answers it unless --no-respond. Prints the thread id, then the "
        "answer."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("message", help="the message's text")
        parser.add_argument(
            "--user", required=True, help="username (USERNAME_FIELD), or pk with --pk"
        )
        parser.add_argument("--pk", action="store_true", help="--user is a primary key")
        parser.add_argument("--thread", metavar="THREAD_ID", help="add to this thread")
        parser.add_argument(
            "--no-respond",
            dest="respond",
            action="store_false",
            help="store the message without running respond() (a notice)",
        )
        parser.add_argument("--title", help="title of the new thread")
        parser.add_argument(
            "--scope", help="the workspace, agent or tenant (docs/guides/workspaces.md)"
        )
        parser.add_argument(
            "--metadata", metavar="JSON", help="metadata of the new thread, e.g. '{\"ticket\": 7}'"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        metadata = parse_metadata(options["metadata"])
        if options["thread"] and (metadata is not None or options["title"] is not None):
            raise CommandError("--title and --metadata are for a new thread; leave out --thread.")
        user = get_user(options)
        try:
            sent = send(
                user,
                options["message"],
                thread_id=options["thread"],
                metadata=metadata,
                title=options["title"],
                respond=options["respond"],
                scope=options["scope"],
            )
        except (APIException, NotFoundError, ImproperlyConfigured, ValueError) as e:
            raise CommandError(one_line(e)) from e
        self.stdout.write(sent.thread.id)
        for item in sent.thread.items.data:
            if isinstance(item, AssistantMessageItem):
                self.stdout.write("".join(part.text for part in item.content))
        if sent.failed:
            raise CommandError(
                f"The message is saved in thread {sent.thread.id}, but respond() failed: "
                "see the log."
            )


def parse_metadata(value: str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        metadata = json.loads(value)
    except json.JSONDecodeError as e:
        raise CommandError(f"--metadata is not JSON: {e}.") from None
    if not isinstance(metadata, dict):
        raise CommandError(f"--metadata must be a JSON object, not {value!r}.")
    return metadata


def one_line(error: Exception) -> str:
    detail = getattr(error, "detail", None)
    text = str(detail if detail is not None else error)
    return " ".join(text.split())
