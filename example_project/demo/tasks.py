"""Jobs for a task queue (Celery, RQ, Django's tasks): plain functions here; decorate them with
your queue's decorator (``@shared_task``, ``@job``, ``@task``) in your project."""

from __future__ import annotations

# --8<-- [start:task]
from chatkit_django.conversations import add_message, start_thread


def send_weekly_report(user_id: int, summary: str) -> str:
    """Start a thread the user finds in their history, answered; returns its id."""
    thread = start_thread(
        user_id,  # a primary key: task arguments must serialise
        f"Here is my week, summarise it for me:\n\n{summary}",
        title="Weekly report",
        metadata={"kind": "weekly-report"},
    )
    return thread.id


def post_notice(user_id: int, thread_id: str, text: str) -> None:
    """Add a notice to one of the user's threads, without an answer."""
    add_message(user_id, thread_id, text, respond=False)


# --8<-- [end:task]
