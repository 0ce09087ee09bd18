"""A small deterministic server for tests."""

from collections.abc import AsyncIterator
from datetime import datetime

from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    ThreadItemDoneEvent,
    ThreadMetadata,
    ThreadStreamEvent,
    UserMessageItem,
)

from chatkit_django.context import ChatKitContext
from chatkit_django.server import DjangoChatKitServer
from chatkit_django.store import item_preview


class EchoServer(DjangoChatKitServer):
    """Answers every message with "echo: <its text>"."""

    async def respond(
        self,
        thread: ThreadMetadata,
        input_user_message: UserMessageItem | None,
        context: ChatKitContext,
    ) -> AsyncIterator[ThreadStreamEvent]:
        text = item_preview(input_user_message) if input_user_message else ""
        yield ThreadItemDoneEvent(
            item=AssistantMessageItem(
                id=self.store.generate_item_id("message", thread, context),
                thread_id=thread.id,
                created_at=datetime.now(),
                content=[AssistantMessageContent(text=f"echo: {text}")],
            )
        )
