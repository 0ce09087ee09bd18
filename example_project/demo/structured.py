"""The offline responder's structured question: ask, then continue from the answer.

Say "survey" in the chat: the responder asks a multiple-choice question and a freeform one
(a ``StructuredInputItem``). ChatKit.js shows them; the answer comes back as
``threads.add_structured_input``, the SDK records it on the item (saved by ``DjangoStore``),
then calls ``respond()`` without a user message, and the responder continues from it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

from chatkit.server import ChatKitServer
from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    StructuredInputFreeform,
    StructuredInputItem,
    StructuredInputMultipleChoice,
    StructuredInputMultipleChoiceOption,
    ThreadItemDoneEvent,
    ThreadMetadata,
    ThreadStreamEvent,
)

from chatkit_django.context import ChatKitContext

TRIGGER = "survey"
TOPICS = ["Attachments", "Mentions", "Dictation"]


def wants_survey(text: str) -> bool:
    return TRIGGER in text.lower()


def survey_item(
    server: ChatKitServer, thread: ThreadMetadata, context: ChatKitContext
) -> StructuredInputItem:
    return StructuredInputItem(
        id=server.store.generate_item_id("message", thread, context),
        thread_id=thread.id,
        created_at=datetime.now(),
        inputs=[
            StructuredInputMultipleChoice(
                id="topic",
                question="Which rich input should we try first?",
                options=[StructuredInputMultipleChoiceOption(value=t) for t in TOPICS],
            ),
            StructuredInputFreeform(
                id="note",
                question="Anything you'd like to add?",
                description="Optional.",
            ),
        ],
    )


async def last_answered_survey(
    server: ChatKitServer, thread: ThreadMetadata, context: ChatKitContext
) -> StructuredInputItem | None:
    """The newest structured input item, if it has been answered or skipped."""
    page = await server.store.load_thread_items(thread.id, None, 5, "desc", context)
    for item in page.data:
        if isinstance(item, StructuredInputItem):
            return item if item.status != "pending" else None
    return None


def follow_up_text(item: StructuredInputItem) -> str:
    if item.status == "skipped":
        return "No problem, we can skip the survey."
    answers = {q.id: q.answer for q in item.inputs}
    topic, note = answers.get("topic"), answers.get("note")
    text = (
        "Let's start with "
        + (topic.values[0] if topic and topic.values else "whatever you like")
        + "."
    )
    if note and note.values:
        text += f' You added: "{note.values[0]}".'
    return text


async def survey_turn(
    server: ChatKitServer,
    thread: ThreadMetadata,
    text: str | None,
    context: ChatKitContext,
) -> AsyncIterator[ThreadStreamEvent]:
    """Events for the survey: the question when asked for, the follow-up after an answer."""
    if text is not None:
        if wants_survey(text):
            yield ThreadItemDoneEvent(item=survey_item(server, thread, context))
        return
    answered = await last_answered_survey(server, thread, context)
    if answered is not None:
        yield ThreadItemDoneEvent(
            item=AssistantMessageItem(
                id=server.store.generate_item_id("message", thread, context),
                thread_id=thread.id,
                created_at=datetime.now(),
                content=[AssistantMessageContent(text=follow_up_text(answered))],
            )
        )
