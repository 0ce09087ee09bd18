"""The scale harness's server: the benchmark responder, plus a custom action."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from chatkit.actions import Action
from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    ThreadItemDoneEvent,
    ThreadMetadata,
    ThreadStreamEvent,
    WidgetItem,
)

from benchmarks.endpoint_server import BenchServer
from chatkit_django.context import ChatKitContext


class ScaleServer(BenchServer):
    """``BenchServer`` (``BENCH_DELTAS`` deltas, ``BENCH_DELAY`` apart) answering actions."""

    async def action(
        self,
        thread: ThreadMetadata,
        action: Action[str, Any],
        sender: WidgetItem | None,
        context: ChatKitContext,
    ) -> AsyncIterator[ThreadStreamEvent]:
        yield ThreadItemDoneEvent(
            item=AssistantMessageItem(
                id=self.store.generate_item_id("message", thread, context),
                thread_id=thread.id,
                created_at=datetime.now(),
                content=[AssistantMessageContent(text=f"action: {action.type}")],
            )
        )
