"""One case per ChatKit request type, built from the SDK's own request models.

Each case seeds what it needs through ``DjangoStore``, sends its request with a transport
(``send(request) -> Reply``) and checks the answer and the database. ``test_protocol.py``
runs them through Django's async test client and through a live uvicorn process.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chatkit.actions import Action
from chatkit.types import (
    AttachmentCreateParams,
    AttachmentDeleteParams,
    AttachmentsCreateReq,
    AttachmentsDeleteReq,
    ClientToolCallItem,
    InputTranscribeParams,
    InputTranscribeReq,
    ItemFeedbackParams,
    ItemsFeedbackReq,
    ItemsListParams,
    ItemsListReq,
    StructuredInputAnswerSubmission,
    StructuredInputFreeform,
    StructuredInputItem,
    StructuredInputSubmission,
    ThreadAddClientToolOutputParams,
    ThreadAddStructuredInputParams,
    ThreadCustomActionParams,
    ThreadDeleteParams,
    ThreadGetByIdParams,
    ThreadListParams,
    ThreadRetryAfterItemParams,
    ThreadsAddClientToolOutputReq,
    ThreadsAddStructuredInputReq,
    ThreadsCustomActionReq,
    ThreadsDeleteReq,
    ThreadsGetByIdReq,
    ThreadsListReq,
    ThreadsRetryAfterItemReq,
    ThreadsSyncCustomActionReq,
    ThreadsUpdateReq,
    ThreadUpdateParams,
    WidgetItem,
)
from chatkit.widgets import Card, Text
from pydantic import BaseModel

from chatkit_django.context import ChatKitContext
from chatkit_django.models import Attachment, Feedback, Thread, ThreadItem
from chatkit_django.store import DjangoStore
from tests.chatkit_client import add_message_req, create_req, parse_sse


@dataclass
class Reply:
    status: int
    content_type: str
    body: bytes

    def json(self) -> Any:
        assert self.content_type == "application/json", self.content_type
        return json.loads(self.body)

    def events(self) -> list[dict[str, Any]]:
        assert self.status == 200, self.body
        assert self.content_type == "text/event-stream", self.content_type
        return parse_sse(self.body)


Send = Callable[[BaseModel], Awaitable[Reply]]


class Case:
    """A conversation already under way for ``user``, and a way to talk to it."""

    def __init__(self, send: Send, user: Any) -> None:
        self.send = send
        self.user = user
        self.store = DjangoStore()
        self.context = ChatKitContext(user=user)

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{uuid.uuid4().hex}"

    async def start(self, text: str = "hello") -> list[dict[str, Any]]:
        events = (await self.send(create_req(text))).events()
        self.thread_id = events[0]["thread"]["id"]
        return events

    async def add(self, item: Any) -> None:
        await self.store.add_thread_item(self.thread_id, item, self.context)

    async def last_text(self) -> str:
        row = await ThreadItem.objects.filter(
            thread_id=self.thread_id, type="assistant_message"
        ).alatest("seq")
        return row.data["content"][0]["text"]


async def threads_create(case: Case) -> None:
    events = await case.start("hi there")
    assert [e["type"] for e in events] == [
        "thread.created",
        "thread.item.done",
        "stream_options",
        "thread.item.done",
    ]
    assert events[-1]["item"]["content"][0]["text"] == "echo: hi there"
    assert await case.last_text() == "echo: hi there"


async def threads_add_user_message(case: Case) -> None:
    await case.start()
    events = (await case.send(add_message_req(case.thread_id, "more"))).events()
    assert events[0]["item"]["type"] == "user_message"
    assert events[-1]["item"]["content"][0]["text"] == "echo: more"
    assert await ThreadItem.objects.filter(thread_id=case.thread_id).acount() == 4


async def threads_add_client_tool_output(case: Case) -> None:
    await case.start()
    request = ThreadsAddClientToolOutputReq(
        params=ThreadAddClientToolOutputParams(thread_id=case.thread_id, result={"lat": 1})
    )
    # No pending tool call: refused before any stream (the SDK would send an error event).
    refused = await case.send(request)
    assert refused.status == 400
    assert refused.json()["code"] == "invalid_request"
    assert "not a pending client tool call" in refused.json()["detail"]
    call = ClientToolCallItem(
        id=case.new_id("tc"),
        thread_id=case.thread_id,
        created_at=datetime.now(),
        call_id="call_1",
        name="get_location",
        arguments={},
    )
    await case.add(call)
    events = (await case.send(request)).events()
    assert events[-1]["item"]["content"][0]["text"] == "echo: "
    row = await ThreadItem.objects.aget(pk=call.id)
    assert row.data["status"] == "completed"
    assert row.data["output"] == {"lat": 1}


async def threads_add_structured_input(case: Case) -> None:
    await case.start()
    item_id = case.new_id("si")
    await case.add(
        StructuredInputItem(
            id=item_id,
            thread_id=case.thread_id,
            created_at=datetime.now(),
            inputs=[StructuredInputFreeform(id="colour", question="Which colour?")],
        )
    )
    request = ThreadsAddStructuredInputReq(
        params=ThreadAddStructuredInputParams(
            thread_id=case.thread_id,
            item_id=item_id,
            input=StructuredInputSubmission(
                answers={"colour": StructuredInputAnswerSubmission(values=["blue"])}
            ),
        )
    )
    events = (await case.send(request)).events()
    assert "thread.item.replaced" in [e["type"] for e in events]
    row = await ThreadItem.objects.aget(pk=item_id)
    assert row.data["status"] == "answered"
    assert row.data["inputs"][0]["answer"]["values"] == ["blue"]


async def threads_retry_after_item(case: Case) -> None:
    events = await case.start("again")
    user_item_id = events[1]["item"]["id"]
    first_answer = events[-1]["item"]["id"]
    request = ThreadsRetryAfterItemReq(
        params=ThreadRetryAfterItemParams(thread_id=case.thread_id, item_id=user_item_id)
    )
    events = (await case.send(request)).events()
    assert events[-1]["item"]["content"][0]["text"] == "echo: again"
    answers = [
        pk
        async for pk in ThreadItem.objects.filter(
            thread_id=case.thread_id, type="assistant_message"
        ).values_list("pk", flat=True)
    ]
    assert len(answers) == 1
    assert answers[0] != first_answer


async def _add_widget(case: Case) -> str:
    await case.start()
    item_id = case.new_id("wdg")
    await case.add(
        WidgetItem(
            id=item_id,
            thread_id=case.thread_id,
            created_at=datetime.now(),
            widget=Card(children=[Text(value="Click me")]),
        )
    )
    return item_id


async def threads_custom_action(case: Case) -> None:
    widget_id = await _add_widget(case)
    request = ThreadsCustomActionReq(
        params=ThreadCustomActionParams(
            thread_id=case.thread_id,
            item_id=widget_id,
            action=Action(type="demo.click", payload={"n": 1}),
        )
    )
    events = (await case.send(request)).events()
    assert events[-1]["item"]["content"][0]["text"] == "action: demo.click"


async def threads_sync_custom_action(case: Case) -> None:
    widget_id = await _add_widget(case)
    request = ThreadsSyncCustomActionReq(
        params=ThreadCustomActionParams(
            thread_id=case.thread_id,
            item_id=widget_id,
            action=Action(type="demo.toggle", payload=None),
        )
    )
    reply = await case.send(request)
    assert reply.status == 200
    assert reply.json()["updated_item"]["id"] == widget_id


async def threads_get_by_id(case: Case) -> None:
    await case.start()
    reply = await case.send(ThreadsGetByIdReq(params=ThreadGetByIdParams(thread_id=case.thread_id)))
    data = reply.json()
    assert data["id"] == case.thread_id
    assert [i["type"] for i in data["items"]["data"]] == ["user_message", "assistant_message"]


async def threads_list(case: Case) -> None:
    await case.start()
    reply = await case.send(ThreadsListReq(params=ThreadListParams(limit=5)))
    # Newest first: the thread just created leads the list.
    assert reply.json()["data"][0]["id"] == case.thread_id


async def items_list(case: Case) -> None:
    await case.start()
    reply = await case.send(
        ItemsListReq(params=ItemsListParams(thread_id=case.thread_id, order="asc"))
    )
    assert [i["type"] for i in reply.json()["data"]] == ["user_message", "assistant_message"]


async def items_feedback(case: Case) -> None:
    events = await case.start()
    item_id = events[-1]["item"]["id"]
    request = ItemsFeedbackReq(
        params=ItemFeedbackParams(thread_id=case.thread_id, item_ids=[item_id], kind="negative")
    )
    assert (await case.send(request)).json() == {}
    row = await Feedback.objects.aget(item_id=item_id)
    assert (row.user_id, row.kind) == (case.user.pk, "negative")


async def threads_update(case: Case) -> None:
    await case.start()
    request = ThreadsUpdateReq(params=ThreadUpdateParams(thread_id=case.thread_id, title="Plans"))
    assert (await case.send(request)).json()["title"] == "Plans"
    assert (await Thread.objects.aget(pk=case.thread_id)).title == "Plans"


async def threads_delete(case: Case) -> None:
    await case.start()
    request = ThreadsDeleteReq(params=ThreadDeleteParams(thread_id=case.thread_id))
    assert (await case.send(request)).json() == {}
    assert not await Thread.objects.filter(pk=case.thread_id).aexists()


async def input_transcribe(case: Case) -> None:
    request = InputTranscribeReq(
        params=InputTranscribeParams(
            audio_base64=base64.b64encode(b"12345").decode(), mime_type="audio/webm;codecs=opus"
        )
    )
    assert (await case.send(request)).json() == {"text": "5 bytes of audio/webm"}


async def attachments_create(case: Case) -> None:
    request = AttachmentsCreateReq(
        params=AttachmentCreateParams(name="notes.txt", size=12, mime_type="text/plain")
    )
    data = (await case.send(request)).json()
    assert data["name"] == "notes.txt"
    assert data["upload_descriptor"]["url"]
    row = await Attachment.objects.aget(pk=data["id"])
    assert row.owner_id == case.user.pk


async def attachments_delete(case: Case) -> None:
    request = AttachmentsCreateReq(
        params=AttachmentCreateParams(name="notes.txt", size=12, mime_type="text/plain")
    )
    attachment_id = (await case.send(request)).json()["id"]
    request = AttachmentsDeleteReq(params=AttachmentDeleteParams(attachment_id=attachment_id))
    assert (await case.send(request)).json() == {}
    assert not await Attachment.objects.filter(pk=attachment_id).aexists()


CASES: dict[str, Callable[[Case], Awaitable[None]]] = {
    "threads.create": threads_create,
    "threads.add_user_message": threads_add_user_message,
    "threads.add_client_tool_output": threads_add_client_tool_output,
    "threads.add_structured_input": threads_add_structured_input,
    "threads.retry_after_item": threads_retry_after_item,
    "threads.custom_action": threads_custom_action,
    "threads.sync_custom_action": threads_sync_custom_action,
    "threads.get_by_id": threads_get_by_id,
    "threads.list": threads_list,
    "items.list": items_list,
    "items.feedback": items_feedback,
    "threads.update": threads_update,
    "threads.delete": threads_delete,
    "input.transcribe": input_transcribe,
    "attachments.create": attachments_create,
    "attachments.delete": attachments_delete,
}
