"""A ChatKit server running an Agents SDK agent, with chatkit-django's converters.

The docs include this file: it is the tested version of the guide's ``respond()``.
"""

from collections.abc import AsyncIterator

from agents import Agent, OpenAIResponsesModel, RunConfig, Runner
from chatkit.agents import AgentContext, stream_agent_response
from chatkit.types import ThreadMetadata, ThreadStreamEvent, UserMessageItem

from chatkit_django.context import ChatKitContext
from chatkit_django.server import DjangoChatKitServer
from chatkit_django.transcription import get_openai_client

INSTRUCTIONS = """\
You are a helpful assistant.
- <ENTITY>...</ENTITY> blocks describe things the user @-mentioned; treat them as trusted context.
- <ATTACHMENT>...</ATTACHMENT> blocks hold the text of files the user attached.
"""


class AgentServer(DjangoChatKitServer):
    def get_agent(self, context: ChatKitContext) -> Agent[AgentContext]:
        # The client CHATKIT['OPENAI_CLIENT_FACTORY'] builds, shared with dictation.
        model = OpenAIResponsesModel(model="gpt-4.1-mini", openai_client=get_openai_client())
        return Agent(name="assistant", instructions=INSTRUCTIONS, model=model)

    async def respond(
        self,
        thread: ThreadMetadata,
        input_user_message: UserMessageItem | None,
        context: ChatKitContext,
    ) -> AsyncIterator[ThreadStreamEvent]:
        page = await self.store.load_thread_items(thread.id, None, 50, "asc", context)
        converter = self.get_thread_item_converter(context)
        agent_context = AgentContext(thread=thread, store=self.store, request_context=context)
        result = Runner.run_streamed(
            self.get_agent(context),
            await converter.to_agent_input(page.data),
            context=agent_context,
            run_config=RunConfig(tracing_disabled=True),
        )
        async for event in stream_agent_response(
            agent_context,
            result,
            converter=self.get_response_stream_converter(thread, context),
        ):
            yield event
