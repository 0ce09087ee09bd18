"""The example project's server: an offline responder that needs no API key."""

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
from example_project.demo.structured import survey_turn


class DemoServer(DjangoChatKitServer):
    """Echoes what it received; replaced by a streaming demo in the endpoint work."""

    async def respond(
        self,
        thread: ThreadMetadata,
        input_user_message: UserMessageItem | None,
        context: ChatKitContext,
    ) -> AsyncIterator[ThreadStreamEvent]:
        text = item_preview(input_user_message) if input_user_message else ""
        # Rich input demo: "survey" asks a structured question; its answer continues here.
        handled = False
        async for event in survey_turn(self, thread, text if input_user_message else None, context):
            handled = True
            yield event
        if handled:
            return
        yield ThreadItemDoneEvent(
            item=AssistantMessageItem(
                id=self.store.generate_item_id("message", thread, context),
                thread_id=thread.id,
                created_at=datetime.now(),
                content=[AssistantMessageContent(text=f"You said: {text}")],
            )
        )
