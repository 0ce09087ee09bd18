"""A server that answers with the exact model input its converter produced."""

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

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
from example_project.demo.structured import survey_item


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


class GuideServer(ModelInputServer):
    """ModelInputServer that also asks a structured question when the text says "survey",
    and answers a submitted one with the model input the SDK's default conversion makes."""

    async def respond(
        self,
        thread: ThreadMetadata,
        input_user_message: UserMessageItem | None,
        context: ChatKitContext,
    ) -> AsyncIterator[ThreadStreamEvent]:
        if input_user_message is None:
            page = await self.store.load_thread_items(thread.id, None, 1, "desc", context)
            converter = self.get_thread_item_converter(context)
            yield self.reply(thread, context, await converter.to_agent_input(page.data))
            return
        async for event in super().respond(thread, input_user_message, context):
            yield event
        if "survey" in item_preview(input_user_message):
            yield ThreadItemDoneEvent(item=survey_item(self, thread, context))

    def reply(self, thread: ThreadMetadata, context: ChatKitContext, items: list) -> Any:
        return ThreadItemDoneEvent(
            item=AssistantMessageItem(
                id=self.store.generate_item_id("message", thread, context),
                thread_id=thread.id,
                created_at=datetime.now(),
                content=[AssistantMessageContent(text=json.dumps(items))],
            )
        )
