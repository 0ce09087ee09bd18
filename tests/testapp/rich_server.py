"""A server that answers with the exact model input its converter produced."""

import json
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


class ModelInputServer(DjangoChatKitServer):
    """Replies with ``json.dumps`` of ``to_agent_input`` for the new user message."""

    async def respond(
        self,
        thread: ThreadMetadata,
        input_user_message: UserMessageItem | None,
        context: ChatKitContext,
    ) -> AsyncIterator[ThreadStreamEvent]:
        converter = self.get_thread_item_converter(context)
        items = await converter.to_agent_input(input_user_message) if input_user_message else []
        yield ThreadItemDoneEvent(
            item=AssistantMessageItem(
                id=self.store.generate_item_id("message", thread, context),
                thread_id=thread.id,
                created_at=datetime.now(),
                content=[AssistantMessageContent(text=json.dumps(items))],
            )
        )
