"""An assistant reply streamed as ChatKit events: the item, its text deltas, the done item.

The demo's offline responder streams its words with these, and so do the test servers
(``tests/testapp/server.py``) and the benchmarks' responder (``benchmarks/endpoint_server.py``);
they live here, not under ``tests/``, because the example project must run on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any

from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemUpdatedEvent,
    ThreadMetadata,
    ThreadStreamEvent,
)

from chatkit_django.context import ChatKitContext


def new_reply(server: Any, thread: ThreadMetadata, context: ChatKitContext) -> AssistantMessageItem:
    """An empty assistant message with an id from the server's store."""
    return AssistantMessageItem(
        id=server.store.generate_item_id("message", thread, context),
        thread_id=thread.id,
        created_at=datetime.now(),
        content=[],
    )


def delta(item: AssistantMessageItem, text: str) -> ThreadItemUpdatedEvent:
    """``text`` appended to the reply's first content part."""
    return ThreadItemUpdatedEvent(
        item_id=item.id,
        update=AssistantMessageContentPartTextDelta(content_index=0, delta=text),
    )


def done(item: AssistantMessageItem, text: str) -> ThreadItemDoneEvent:
    """The finished reply, whose whole text is ``text``."""
    return ThreadItemDoneEvent(
        item=item.model_copy(update={"content": [AssistantMessageContent(text=text)]})
    )


async def stream_reply(
    item: AssistantMessageItem, deltas: Iterable[str], delay: float = 0.0
) -> AsyncIterator[ThreadStreamEvent]:
    """The reply added, each delta (``delay`` seconds apart), then done with their text."""
    yield ThreadItemAddedEvent(item=item)
    sent = []
    for text in deltas:
        sent.append(text)
        yield delta(item, text)
        await asyncio.sleep(delay)
    yield done(item, "".join(sent))
