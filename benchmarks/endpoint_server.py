"""The responder both benchmark apps run: ``BENCH_DELTAS`` text deltas, then the done item.

A user message ``bench <deltas> <delay>`` overrides both for that answer (the open-streams
benchmark runs short and long answers against one server).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import datetime

from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemUpdatedEvent,
    ThreadMetadata,
    ThreadStreamEvent,
    UserMessageItem,
)

from chatkit_django.context import ChatKitContext
from chatkit_django.server import DjangoChatKitServer
from chatkit_django.store import item_preview

DELTAS = int(os.environ.get("BENCH_DELTAS", "200"))
DELAY = float(os.environ.get("BENCH_DELAY", "0"))


class BenchServer(DjangoChatKitServer):
    async def respond(
        self,
        thread: ThreadMetadata,
        input_user_message: UserMessageItem | None,
        context: ChatKitContext,
    ) -> AsyncIterator[ThreadStreamEvent]:
        item = AssistantMessageItem(
            id=self.store.generate_item_id("message", thread, context),
            thread_id=thread.id,
            created_at=datetime.now(),
            content=[],
        )
        deltas, delay = DELTAS, DELAY
        words = item_preview(input_user_message).split() if input_user_message else []
        if len(words) == 3 and words[0] == "bench":
            deltas, delay = int(words[1]), float(words[2])
        yield ThreadItemAddedEvent(item=item)
        for _ in range(deltas):
            yield ThreadItemUpdatedEvent(
                item_id=item.id,
                update=AssistantMessageContentPartTextDelta(content_index=0, delta="tok "),
            )
            await asyncio.sleep(delay)
        text = "tok " * deltas
        yield ThreadItemDoneEvent(
            item=item.model_copy(update={"content": [AssistantMessageContent(text=text)]})
        )
