"""The example project's server.

Without ``OPENAI_API_KEY`` an offline responder streams a deterministic markdown reply word
by word, echoing what it received (text, @-mentions, attachments, structured answers), so
every part of the UI and the protocol can be tried with no network. With a key, an Agents SDK
agent answers through the SDK's ``stream_agent_response``. Either way ``title_thread`` names a
new thread after its first answer (a small model with a key, the first words offline).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

from chatkit.agents import AgentContext, stream_agent_response
from chatkit.types import (
    AudioInput,
    ThreadMetadata,
    ThreadStreamEvent,
    TranscriptionResult,
    UserMessageItem,
    UserMessageTagContent,
    UserMessageTextContent,
)

from chatkit_django.context import ChatKitContext
from chatkit_django.server import DjangoChatKitServer
from example_project.demo.replies import new_reply, stream_reply
from example_project.demo.structured import survey_turn

MODEL = "gpt-4.1-mini"
TITLE_MODEL = "gpt-4.1-nano"  # a small model is enough for a title
INSTRUCTIONS = """\
You are the chatkit-django demo assistant. Answer briefly, in markdown.
<ENTITY>...</ENTITY> blocks describe things the user @-mentioned; <ATTACHMENT> blocks hold
the text of attached files.
"""


def offline_reply(message: UserMessageItem) -> str:
    """The offline responder's markdown: what arrived, part by part."""
    texts = [c.text for c in message.content if isinstance(c, UserMessageTextContent)]
    tags = [c.text for c in message.content if isinstance(c, UserMessageTagContent)]
    lines = ["**Offline demo** (set `OPENAI_API_KEY` for a real model).", ""]
    lines.append(f"You said: _{' '.join(t.strip() for t in texts if t.strip()) or '(nothing)'}_")
    if tags:
        lines.append("")
        lines.append("Mentioned: " + ", ".join(f"`@{tag}`" for tag in tags))
    if message.attachments:
        lines.append("")
        lines.append("Attachments:")
        lines.extend(f"- {a.name} ({a.mime_type})" for a in message.attachments)
    lines.extend(["", 'Say "survey" for a structured question.'])
    return "\n".join(lines)


def message_text(message: UserMessageItem) -> str:
    return " ".join(c.text for c in message.content if isinstance(c, UserMessageTextContent))


def title_from(message: UserMessageItem) -> str:
    """The offline title: the first six words of the message."""
    return " ".join(message_text(message).split()[:6]) or "New chat"


class DemoServer(DjangoChatKitServer):
    """Offline responder by default; an Agents SDK agent when ``OPENAI_API_KEY`` is set."""

    # Pause between streamed words, so streaming is visible in the browser.
    word_delay = 0.03

    def use_model(self) -> bool:
        return bool(os.environ.get("OPENAI_API_KEY"))

    async def respond(
        self,
        thread: ThreadMetadata,
        input_user_message: UserMessageItem | None,
        context: ChatKitContext,
    ) -> AsyncIterator[ThreadStreamEvent]:
        text = " ".join(c.text for c in input_user_message.content) if input_user_message else None
        # Rich input demo: "survey" asks a structured question; its answer continues here.
        handled = False
        async for event in survey_turn(self, thread, text, context):
            handled = True
            yield event
        if handled or input_user_message is None:
            return
        if self.use_model():
            stream = self.agent_reply(thread, context)
        else:
            stream = self.offline_reply(thread, input_user_message, context)
        async for event in stream:
            yield event

    async def offline_reply(
        self, thread: ThreadMetadata, message: UserMessageItem, context: ChatKitContext
    ) -> AsyncIterator[ThreadStreamEvent]:
        words = offline_reply(message).split(" ")
        deltas = [f" {word}" if n else word for n, word in enumerate(words)]
        async for event in stream_reply(new_reply(self, thread, context), deltas, self.word_delay):
            yield event

    async def agent_reply(
        self, thread: ThreadMetadata, context: ChatKitContext
    ) -> AsyncIterator[ThreadStreamEvent]:
        from agents import Agent, OpenAIResponsesModel, Runner

        from chatkit_django.transcription import get_openai_client

        page = await self.store.load_thread_items(thread.id, None, 30, "desc", context)
        converter = self.get_thread_item_converter(context)
        agent = Agent(
            name="demo",
            instructions=INSTRUCTIONS,
            model=OpenAIResponsesModel(model=MODEL, openai_client=get_openai_client()),
        )
        agent_context = AgentContext(thread=thread, store=self.store, request_context=context)
        result = Runner.run_streamed(
            agent, await converter.to_agent_input(page.data[::-1]), context=agent_context
        )
        async for event in stream_agent_response(
            agent_context, result, converter=self.get_response_stream_converter(thread, context)
        ):
            yield event

    # --8<-- [start:title_thread]
    async def title_thread(
        self, thread: ThreadMetadata, item: UserMessageItem, context: ChatKitContext
    ) -> str | None:
        """Name a new thread after its first answer: a small model with a key, else the
        first words of the message. A failure here is logged; the answer is not affected."""
        if not self.use_model():
            return title_from(item)
        from chatkit_django.transcription import get_openai_client

        stream = await get_openai_client().responses.create(
            model=TITLE_MODEL,
            instructions="Name this conversation in at most six words. No quotes.",
            input=message_text(item),
            stream=True,
        )
        parts = [
            event.delta async for event in stream if event.type == "response.output_text.delta"
        ]
        return "".join(parts).strip() or title_from(item)

    # --8<-- [end:title_thread]

    async def transcribe(
        self, audio_input: AudioInput, context: ChatKitContext
    ) -> TranscriptionResult:
        if self.use_model():
            return await super().transcribe(audio_input, context)
        return TranscriptionResult(
            text=f"(offline dictation: {len(audio_input.data)} bytes of {audio_input.media_type})"
        )
