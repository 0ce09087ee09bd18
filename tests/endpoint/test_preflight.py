"""The server's checks before the SDK runs: who may act, how many attachments, one answer
per pending item, no input into locked or closed threads (issue #12, defects 1, 3 and 5).

Every refusal is a JSON error before any stream opens, and nothing was written or run:
``RecordingServer`` records each ``respond``/``action``/``sync_action`` call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from chatkit.actions import Action
from chatkit.server import StreamingResult
from chatkit.types import (
    ClientToolCallItem,
    ClosedStatus,
    ItemFeedbackParams,
    ItemsFeedbackReq,
    ItemsListParams,
    ItemsListReq,
    LockedStatus,
    StructuredInputAnswerSubmission,
    StructuredInputFreeform,
    StructuredInputItem,
    StructuredInputSubmission,
    ThreadAddClientToolOutputParams,
    ThreadAddStructuredInputParams,
    ThreadCustomActionParams,
    ThreadDeleteParams,
    ThreadGetByIdParams,
    ThreadRetryAfterItemParams,
    ThreadsAddClientToolOutputReq,
    ThreadsAddStructuredInputReq,
    ThreadsCustomActionReq,
    ThreadsDeleteReq,
    ThreadsGetByIdReq,
    ThreadsRetryAfterItemReq,
    ThreadsSyncCustomActionReq,
    ThreadsUpdateReq,
    ThreadUpdateParams,
    WidgetItem,
)
from chatkit.widgets import Card, Text
from django.contrib.auth.models import Permission
from django.test import AsyncClient
from pydantic import BaseModel

from chatkit_django import models
from chatkit_django.context import ChatKitContext
from chatkit_django.exceptions import AlreadyAnswered
from chatkit_django.store import ANSWERING_KEY, DjangoStore
from tests.chatkit_client import (
    add_message_req,
    create_req,
    parse_sse,
    post,
    read_stream,
    user_input,
)
from tests.db import capture_queries, run_in_parallel
from tests.factories import PNG, make_thread, make_user_message, store_attachment
from tests.testapp.server import RecordingServer

pytestmark = pytest.mark.django_db(transaction=True)

astore_attachment = sync_to_async(store_attachment)
recorded = RecordingServer.CALLS


@pytest.fixture(autouse=True)
def _recording_server(settings: Any) -> Iterator[None]:
    settings.CHATKIT = {**settings.CHATKIT, "SERVER_CLASS": "tests.testapp.server.RecordingServer"}
    recorded.clear()
    yield
    recorded.clear()


async def client_for(user: Any) -> AsyncClient:
    client = AsyncClient()
    await client.aforce_login(user)
    return client


async def user_with(auser_factory: Any, *codenames: str) -> Any:
    user = await auser_factory()
    if codenames:
        perms = [p async for p in Permission.objects.filter(codename__in=codenames)]
        assert len(perms) == len(codenames)
        await user.user_permissions.aadd(*perms)
    return user


class Conversation:
    """A thread of the owner's with one of each item a request can name; the last item is a
    pending client tool call, as ``threads.add_client_tool_output`` needs."""

    def __init__(self, owner: Any, **thread_fields: Any) -> None:
        self.owner = owner
        self.context = ChatKitContext(user=owner)
        self.store = DjangoStore()
        self.thread = make_thread(**thread_fields)
        self.id = self.thread.id
        self.message = make_user_message(self.id, "first question")
        self.widget = WidgetItem(
            id=f"wdg_{self.id}",
            thread_id=self.id,
            created_at=datetime.now(),
            widget=Card(children=[Text(value="Click me")]),
        )
        self.question = StructuredInputItem(
            id=f"si_{self.id}",
            thread_id=self.id,
            created_at=datetime.now(),
            inputs=[StructuredInputFreeform(id="colour", question="Which colour?")],
        )
        self.tool_call = ClientToolCallItem(
            id=f"tc_{self.id}",
            thread_id=self.id,
            created_at=datetime.now(),
            call_id="call_1",
            name="get_location",
            arguments={},
        )

    async def save(self) -> Conversation:
        await self.store.save_thread(self.thread, self.context)
        for item in (self.message, self.widget, self.question, self.tool_call):
            await self.store.add_thread_item(self.id, item, self.context)
        return self

    async def snapshot(self) -> Any:
        """Everything a request could change: the thread row, its items, its feedback."""
        thread = await models.Thread.objects.filter(pk=self.id).values("title", "data").afirst()
        items = [
            row
            async for row in models.ThreadItem.objects.filter(thread_id=self.id)
            .order_by("seq")
            .values_list("id", "data")
        ]
        feedback = await models.Feedback.objects.filter(thread_id=self.id).acount()
        return thread, items, feedback

    # -- requests -------------------------------------------------------------

    def answer(self, colour: str = "blue") -> ThreadsAddStructuredInputReq:
        return ThreadsAddStructuredInputReq(
            params=ThreadAddStructuredInputParams(
                thread_id=self.id,
                item_id=self.question.id,
                input=StructuredInputSubmission(
                    answers={"colour": StructuredInputAnswerSubmission(values=[colour])}
                ),
            )
        )

    def tool_output(self, result: Any = None) -> ThreadsAddClientToolOutputReq:
        return ThreadsAddClientToolOutputReq(
            params=ThreadAddClientToolOutputParams(
                thread_id=self.id, result=result if result is not None else {"lat": 1}
            )
        )

    def action(self, sync: bool = False) -> BaseModel:
        params = ThreadCustomActionParams(
            thread_id=self.id, item_id=self.widget.id, action=Action(type="demo.click")
        )
        if sync:
            return ThreadsSyncCustomActionReq(params=params)
        return ThreadsCustomActionReq(params=params)

    def retry(self) -> ThreadsRetryAfterItemReq:
        return ThreadsRetryAfterItemReq(
            params=ThreadRetryAfterItemParams(thread_id=self.id, item_id=self.message.id)
        )


# Every request that changes a thread or runs the responder, and the access it needs.
WRITES: dict[str, tuple[str, Callable[[Conversation], BaseModel]]] = {
    "threads.add_user_message": ("change", lambda c: add_message_req(c.id, "hijack")),
    "threads.custom_action": ("change", lambda c: c.action()),
    "threads.sync_custom_action": ("change", lambda c: c.action(sync=True)),
    "threads.retry_after_item": ("change", lambda c: c.retry()),
    "threads.add_structured_input": ("change", lambda c: c.answer()),
    "threads.add_client_tool_output": ("change", lambda c: c.tool_output()),
    "threads.update": (
        "change",
        lambda c: ThreadsUpdateReq(params=ThreadUpdateParams(thread_id=c.id, title="Mine now")),
    ),
    "threads.delete": (
        "delete",
        lambda c: ThreadsDeleteReq(params=ThreadDeleteParams(thread_id=c.id)),
    ),
    "items.feedback": (
        "change",
        lambda c: ItemsFeedbackReq(
            params=ItemFeedbackParams(thread_id=c.id, item_ids=[c.message.id], kind="negative")
        ),
    ),
}


WRITES_THAT_RUN_THE_SERVER = {
    "threads.add_user_message",
    "threads.custom_action",
    "threads.sync_custom_action",
    "threads.retry_after_item",
    "threads.add_structured_input",
    "threads.add_client_tool_output",
}


async def answer_of(response: Any) -> tuple[int, Any]:
    """Status and body: the JSON, or the SSE events of a stream (read to the end)."""
    if response["Content-Type"] == "text/event-stream":
        return response.status_code, parse_sse(await read_stream(response))
    return response.status_code, response.json()


# -- defect 3: who may act -------------------------------------------------------------


@pytest.mark.parametrize("request_type", list(WRITES))
async def test_a_viewer_cannot_act_and_gets_the_answer_for_a_missing_thread(
    auser_factory: Any, request_type: str
) -> None:
    conversation = await Conversation(await auser_factory()).save()
    viewer = await client_for(await user_with(auser_factory, "view_thread"))
    # The viewer may read the thread...
    response = await post(
        viewer, ThreadsGetByIdReq(params=ThreadGetByIdParams(thread_id=conversation.id))
    )
    assert response.status_code == 200
    before = await conversation.snapshot()

    _, build = WRITES[request_type]
    status, body = await answer_of(await post(viewer, build(conversation)))

    # ...but acting on it answers exactly as for a thread that does not exist.
    assert (status, body) == (
        404,
        {"detail": f"Thread {conversation.id} not found", "code": "not_found"},
    )
    assert recorded == []
    assert await conversation.snapshot() == before
    missing = build(conversation)
    missing.params.thread_id = "thr_missing"
    status, body = await answer_of(await post(viewer, missing))
    assert (status, body["code"]) == (404, "not_found")


@pytest.mark.parametrize("request_type", list(WRITES))
async def test_the_permission_each_write_needs_lets_others_act(
    auser_factory: Any, request_type: str
) -> None:
    conversation = await Conversation(await auser_factory()).save()
    action, build = WRITES[request_type]
    helper = await client_for(await user_with(auser_factory, "view_thread", f"{action}_thread"))

    status, body = await answer_of(await post(helper, build(conversation)))

    assert status == 200
    assert not any(e["type"] == "error" for e in body if isinstance(body, list)), body
    assert len(recorded) == (request_type in WRITES_THAT_RUN_THE_SERVER)


async def test_a_viewer_without_delete_permission_cannot_delete(auser_factory: Any) -> None:
    conversation = await Conversation(await auser_factory()).save()
    editor = await client_for(await user_with(auser_factory, "view_thread", "change_thread"))
    response = await post(editor, WRITES["threads.delete"][1](conversation))
    assert response.status_code == 404
    assert await models.Thread.objects.filter(pk=conversation.id).aexists()


# Queries the checks run for the owner, whatever the thread's length.
PREFLIGHT_QUERIES = {
    "threads.add_user_message": 1,  # the thread, with its access
    "threads.custom_action": 2,  # + the widget
    "threads.sync_custom_action": 1,
    "threads.retry_after_item": 2,  # + the item
    "threads.add_structured_input": 3,  # + the item, + the claim
    "threads.add_client_tool_output": 4,  # + the last item (2: access, page), + the claim
    "threads.update": 1,
    "threads.delete": 1,
    "items.feedback": 1,
}


@pytest.mark.parametrize("request_type", list(WRITES))
async def test_the_checks_cost_a_constant_number_of_queries(
    auser_factory: Any, request_type: str
) -> None:
    owner = await auser_factory()
    conversation = await Conversation(owner).save()
    for n in range(20):  # a longer thread costs the same
        await conversation.store.add_thread_item(
            conversation.id, make_user_message(conversation.id, f"old {n}"), conversation.context
        )
    await conversation.store.add_thread_item(
        conversation.id,
        conversation.tool_call.model_copy(update={"id": "tc_last", "created_at": datetime.now()}),
        conversation.context,
    )
    request = WRITES[request_type][1](conversation)
    server = RecordingServer()

    async with capture_queries() as captured:
        if request_type in WRITES_THAT_RUN_THE_SERVER - {"threads.sync_custom_action"}:
            await server.check_streaming_request(request, conversation.context)
        else:
            await server.check_non_streaming_request(request, conversation.context)

    assert len(captured) == PREFLIGHT_QUERIES[request_type], str(captured)


# -- defect 1: attachments per message ---------------------------------------------------


async def test_a_repeated_attachment_id_is_refused_before_the_stream(auser_factory: Any) -> None:
    user = await auser_factory()
    client = await client_for(user)
    row = await astore_attachment(user, "cat.png", "image/png", PNG)

    async with capture_queries() as captured:
        response = await post(client, create_req("look", attachments=[row.pk] * 300))

    assert response.status_code == 400
    assert response.json() == {
        "detail": "A message may have at most 10 attachments, not 300.",
        "code": "too_many_attachments",
    }
    assert "chatkit_django_attachment" not in str(captured)  # refused before loading any of them
    response = await post(client, create_req("look", attachments=[row.pk, row.pk]))
    assert response.status_code == 400
    assert response.json() == {
        "detail": f"Attachment {row.pk} is named more than once.",
        "code": "duplicate_attachment",
    }
    assert not await models.Thread.objects.aexists()
    assert recorded == []

    thread_id = (await Conversation(user).save()).id
    request = add_message_req(thread_id, "look")
    request.params.input = user_input("look", attachments=[row.pk, "atc_other", row.pk])
    response = await post(client, request)
    assert (response.status_code, response.json()["code"]) == (400, "duplicate_attachment")
    assert await models.ThreadItem.objects.filter(thread_id=thread_id).acount() == 4
    assert recorded == []


async def test_the_per_message_maximum_is_a_setting(auser_factory: Any, settings: Any) -> None:
    settings.CHATKIT = {**settings.CHATKIT, "MAX_ATTACHMENTS_PER_MESSAGE": 2}
    user = await auser_factory()
    client = await client_for(user)
    rows = [await astore_attachment(user, f"{n}.txt", "text/plain", b"x") for n in range(3)]
    ids = [row.pk for row in rows]

    response = await post(client, create_req("three", attachments=ids))
    assert response.status_code == 400
    assert response.json()["detail"] == "A message may have at most 2 attachments, not 3."

    status, events = await answer_of(await post(client, create_req("two", attachments=ids[:2])))
    assert status == 200
    (user_item,) = [e["item"] for e in events if e.get("item", {}).get("type") == "user_message"]
    assert [a["id"] for a in user_item["attachments"]] == ids[:2]


async def test_attachments_are_loaded_in_one_query_whatever_their_number(
    auser_factory: Any,
) -> None:
    user = await auser_factory()
    context = ChatKitContext(user=user)
    server = RecordingServer()
    thread_id = (await Conversation(user).save()).id
    rows = [await astore_attachment(user, f"{n}.txt", "text/plain", b"x") for n in range(10)]

    async def preflight_queries(n: int) -> list[str]:
        request = add_message_req(thread_id, "files")
        request.params.input = user_input("files", attachments=[r.pk for r in rows[:n]])
        async with capture_queries() as captured:
            await server.check_streaming_request(request, context)
        return [q["sql"] for q in captured.queries]

    one, ten = await preflight_queries(1), await preflight_queries(10)
    # The thread with its access, then one query for the attachments.
    assert len(one) == len(ten) == 2
    assert "chatkit_django_attachment" in ten[1]
    # A missing one among them is still a 404 before the stream.
    request = add_message_req(thread_id, "files")
    request.params.input = user_input("files", attachments=[rows[0].pk, "atc_missing"])
    status, body = await answer_of(await post(await client_for(user), request))
    assert (status, body["code"]) == (404, "not_found")


# -- defect 5: one answer per pending item -------------------------------------------------


async def test_a_second_answer_is_409_before_any_stream(auser_factory: Any) -> None:
    owner = await auser_factory()
    conversation = await Conversation(owner).save()
    client = await client_for(owner)

    status, events = await answer_of(await post(client, conversation.answer("blue")))
    assert status == 200
    assert "thread.item.replaced" in [e["type"] for e in events]
    row = await models.ThreadItem.objects.aget(pk=conversation.question.id)
    assert row.data["status"] == "answered"
    assert ANSWERING_KEY not in row.data  # the claim is gone with the pending item

    status, body = await answer_of(await post(client, conversation.answer("red")))
    assert (status, body) == (
        409,
        {
            "detail": f"Item {conversation.question.id} was answered already.",
            "code": "already_answered",
        },
    )
    row = await models.ThreadItem.objects.aget(pk=conversation.question.id)
    assert row.data["inputs"][0]["answer"]["values"] == ["blue"]
    assert recorded == [("respond", conversation.id)]


async def test_a_claim_whose_stream_died_stops_holding_the_question(auser_factory: Any) -> None:
    owner = await auser_factory()
    conversation = await Conversation(owner).save()
    client = await client_for(owner)
    question = models.ThreadItem.objects.filter(pk=conversation.question.id)
    # An answer claimed the question, then its stream died before the SDK stored it.
    row = await question.aget()
    row.data[ANSWERING_KEY] = time.time()
    await question.aupdate(data=row.data)
    status, body = await answer_of(await post(client, conversation.answer("red")))
    assert (status, body["code"]) == (409, "already_answered")  # within the lease

    row.data[ANSWERING_KEY] = time.time() - DjangoStore.claim_lease_seconds - 1
    await question.aupdate(data=row.data)
    status, _events = await answer_of(await post(client, conversation.answer("blue")))
    assert status == 200
    row = await question.aget()
    assert row.data["status"] == "answered"
    assert row.data["inputs"][0]["answer"]["values"] == ["blue"]


@pytest.mark.parametrize("kind", ["structured_input", "client_tool_output"])
async def test_two_answers_racing_for_one_pending_item_run_the_responder_once(
    auser_factory: Any, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    owner = await auser_factory()
    conversation = await Conversation(owner).save()
    if kind == "structured_input":
        requests = [conversation.answer("blue"), conversation.answer("red")]
        item_id = conversation.question.id
    else:
        requests = [conversation.tool_output({"n": 0}), conversation.tool_output({"n": 1})]
        item_id = conversation.tool_call.id
        await models.ThreadItem.objects.filter(pk=conversation.question.id).adelete()

    # Both requests have loaded the pending item before either claims it.
    both_loaded = threading.Barrier(2, timeout=30)
    claim = DjangoStore.claim_pending_item

    async def claim_after_both_loaded(self: DjangoStore, *args: Any) -> bool:
        await sync_to_async(both_loaded.wait)()
        return await claim(self, *args)

    monkeypatch.setattr(DjangoStore, "claim_pending_item", claim_after_both_loaded)

    async def answer(worker: int) -> str:
        server = RecordingServer()
        try:
            result = await server.process_request(requests[worker], ChatKitContext(user=owner))
        except AlreadyAnswered:
            return "409"
        assert isinstance(result, StreamingResult)
        _ = [chunk async for chunk in result]
        return f"answered {worker}"

    results = await sync_to_async(run_in_parallel, thread_sensitive=False)(answer, 2)

    refused, won = sorted(results)
    assert refused == "409"
    winner = int(won.removeprefix("answered "))
    assert recorded == [("respond", conversation.id)]
    row = await models.ThreadItem.objects.aget(pk=item_id)
    if kind == "structured_input":
        assert row.data["status"] == "answered"
        assert row.data["inputs"][0]["answer"]["values"] == [["blue", "red"][winner]]
    else:
        assert row.data["status"] == "completed"
        assert row.data["output"] == {"n": winner}


# -- locked and closed threads ---------------------------------------------------------------


INPUT = ("threads.add_user_message", "threads.retry_after_item")
INPUT += ("threads.add_structured_input", "threads.add_client_tool_output")


@pytest.mark.parametrize("request_type", INPUT)
@pytest.mark.parametrize(
    ("status", "reason"), [(LockedStatus, "Waiting for an agent"), (ClosedStatus, None)]
)
async def test_locked_and_closed_threads_take_no_input(
    auser_factory: Any, request_type: str, status: Any, reason: str | None
) -> None:
    owner = await auser_factory()
    conversation = await Conversation(owner, status=status(reason=reason)).save()
    before = await conversation.snapshot()
    kind = status().type

    response = await post(await client_for(owner), WRITES[request_type][1](conversation))

    because = f" ({reason})" if reason else ""
    assert response.status_code == 400
    assert response.json() == {
        "detail": f"Thread {conversation.id} is {kind}{because}: it takes no new input.",
        "code": f"thread_{kind}",
    }
    assert recorded == []
    assert await conversation.snapshot() == before


async def test_a_locked_thread_still_runs_actions_and_can_be_renamed_and_read(
    auser_factory: Any,
) -> None:
    owner = await auser_factory()
    conversation = await Conversation(owner, status=LockedStatus()).save()
    client = await client_for(owner)
    for request_type in ("threads.custom_action", "threads.sync_custom_action", "threads.update"):
        status, _ = await answer_of(await post(client, WRITES[request_type][1](conversation)))
        assert status == 200, request_type
    assert recorded == [("action", conversation.id), ("sync_action", conversation.id)]
    response = await post(client, ItemsListReq(params=ItemsListParams(thread_id=conversation.id)))
    assert response.status_code == 200
    response = await post(client, WRITES["threads.delete"][1](conversation))
    assert response.status_code == 200
