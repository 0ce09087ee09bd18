"""The responder both benchmark apps run: ``BENCH_DELTAS`` text deltas, then the done item.

A user message ``bench <deltas> <delay>`` overrides both for that answer (the open-streams
benchmark runs short and long answers against one server).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

from chatkit.types import (
    ThreadMetadata,
    ThreadStreamEvent,
    UserMessageItem,
)

from chatkit_django.context import ChatKitContext
from chatkit_django.server import DjangoChatKitServer
from chatkit_django.store import item_preview
from example_project.demo.replies import new_reply, stream_reply

DELTAS = int(os.environ.get("BENCH_DELTAS", "200"))
DELAY = float(os.environ.get("BENCH_DELAY", "0"))


class BenchServer(DjangoChatKitServer):
    async def respond(
        self,
        thread: ThreadMetadata,
        input_user_message: UserMessageItem | None,
        context: ChatKitContext,
    ) -> AsyncIterator[ThreadStreamEvent]:
        deltas, delay = DELTAS, DELAY
        words = item_preview(input_user_message).split() if input_user_message else []
        if len(words) == 3 and words[0] == "bench":
            deltas, delay = int(words[1]), float(words[2])
        async for event in stream_reply(new_reply(self, thread, context), ["tok "] * deltas, delay):
            yield event
