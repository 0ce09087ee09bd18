"""The scale harness's server: the benchmark responder, plus a custom action."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from chatkit.actions import Action
from chatkit.types import (
    ThreadMetadata,
    ThreadStreamEvent,
    WidgetItem,
)

from benchmarks.endpoint_server import BenchServer
from chatkit_django.context import ChatKitContext
from example_project.demo.replies import done, new_reply


class ScaleServer(BenchServer):
    """``BenchServer`` (``BENCH_DELTAS`` deltas, ``BENCH_DELAY`` apart) answering actions."""

    async def action(
        self,
        thread: ThreadMetadata,
        action: Action[str, Any],
        sender: WidgetItem | None,
        context: ChatKitContext,
    ) -> AsyncIterator[ThreadStreamEvent]:
        yield done(new_reply(self, thread, context), f"action: {action.type}")
