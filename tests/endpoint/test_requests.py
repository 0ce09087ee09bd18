"""The endpoint through Django's async test client: routing, auth, errors, feedback."""

from __future__ import annotations

import json

import pytest
from chatkit.types import (
    Action,
    FeedbackKind,
    ItemFeedbackParams,
    ItemsFeedbackReq,
    ItemsListParams,
    ItemsListReq,
    ThreadCustomActionParams,
    ThreadGetByIdParams,
    ThreadListParams,
    ThreadRetryAfterItemParams,
    ThreadsGetByIdReq,
    ThreadsListReq,
    ThreadsRetryAfterItemReq,
    ThreadsSyncCustomActionReq,
)
from django.test import AsyncClient, override_settings
from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from chatkit_django.models import Feedback, Thread, ThreadItem
from tests.chatkit_client import (
    ENDPOINT,
    add_message_req,
    create_req,
    parse_sse,
    post,
    read_stream,
)
from tests.testapp.server import EchoServer

pytestmark = pytest.mark.django_db(transaction=True)


async def create_thread(user_client, text="hello"):
    response = await post(user_client, create_req(text))
    events = parse_sse(await read_stream(response))
    return events[0]["thread"]["id"], events


async def test_threads_create_streams_sse_and_saves_the_turn(user_client):
    response = await post(user_client, create_req("hi there"))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert response["Cache-Control"] == "no-cache"
    assert response["X-Accel-Buffering"] == "no"
    events = parse_sse(await read_stream(response))
    assert [e["type"] for e in events] == [
        "thread.created",
        "thread.item.done",
        "stream_options",
        "thread.item.done",
    ]
    thread_id = events[0]["thread"]["id"]
    assert events[3]["item"]["content"][0]["text"] == "echo: hi there"
    thread = await Thread.objects.aget(pk=thread_id)
    assert thread.owner_id == user_client.user.pk
    types = [
        t async for t in ThreadItem.objects.filter(thread=thread).values_list("type", flat=True)
    ]
    assert sorted(types) == ["assistant_message", "user_message"]


async def test_non_streaming_requests_answer_json(user_client):
    thread_id, _ = await create_thread(user_client)
    response = await post(user_client, ThreadsListReq(params=ThreadListParams()))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert [t["id"] for t in response.json()["data"]] == [thread_id]
    response = await post(user_client, ItemsListReq(params=ItemsListParams(thread_id=thread_id)))
    assert len(response.json()["data"]) == 2


async def test_add_user_message_to_own_thread(user_client):
    thread_id, _ = await create_thread(user_client)
    response = await post(user_client, add_message_req(thread_id, "again"))
    events = parse_sse(await read_stream(response))
    assert events[-1]["item"]["content"][0]["text"] == "echo: again"
    assert await ThreadItem.objects.filter(thread_id=thread_id).acount() == 4


async def test_anonymous_is_refused_with_403_without_authenticators():
    response = await post(AsyncClient(), ThreadsListReq(params=ThreadListParams()))
    assert response.status_code == 403
    assert response.json() == {
        "detail": "Authentication credentials were not provided.",
        "code": "not_authenticated",
    }


async def test_anonymous_allowed_when_the_project_opts_in():
    with override_settings(
        CHATKIT={"SERVER_CLASS": "tests.testapp.server.EchoServer", "ALLOW_ANONYMOUS": True}
    ):
        response = await post(AsyncClient(), ThreadsListReq(params=ThreadListParams()))
    assert response.status_code == 200
    assert response.json()["data"] == []


async def test_session_requests_must_carry_the_csrf_token(user_client, user_factory):
    csrf_client = AsyncClient(enforce_csrf_checks=True)
    await csrf_client.aforce_login(user_client.user)
    request = ThreadsListReq(params=ThreadListParams())
    response = await post(csrf_client, request)
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert "CSRF" in response.json()["detail"]

    token = "a" * 32
    csrf_client.cookies["csrftoken"] = token
    response = await post(csrf_client, request, headers={"X-CSRFToken": token})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("payload", "code", "fragment"),
    [
        ("{not json", "parse_error", "Malformed JSON"),
        ('{"type": "threads.explode", "params": {}}', "invalid_request", "threads.explode"),
        ('{"type": "threads.get_by_id", "params": {}}', "invalid_request", "thread_id"),
        ("[]", "invalid_request", "Invalid ChatKit request"),
    ],
)
async def test_bad_bodies_get_400_naming_the_problem(user_client, payload, code, fragment):
    response = await post(user_client, payload)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    data = response.json()
    assert data["code"] == code
    assert fragment in data["detail"]


async def test_body_over_max_request_bytes_gets_413(user_client):
    request = create_req("x" * 2000)
    with override_settings(
        CHATKIT={"SERVER_CLASS": "tests.testapp.server.EchoServer", "MAX_REQUEST_BYTES": 1000}
    ):
        response = await post(user_client, request)
    assert response.status_code == 413
    assert response.json()["code"] == "request_too_large"
    assert not await Thread.objects.aexists()


async def test_other_methods_get_405_json(user_client):
    response = await user_client.get(ENDPOINT)
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert response.json()["code"] == "method_not_allowed"


async def test_someone_elses_thread_is_404_before_any_stream(user_client, auser_factory):
    thread_id, _ = await create_thread(user_client)
    other = AsyncClient()
    await other.aforce_login(await auser_factory())
    response = await post(other, add_message_req(thread_id, "hijack"))
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "not_found"
    response = await post(other, ThreadsGetByIdReq(params=ThreadGetByIdParams(thread_id=thread_id)))
    assert response.status_code == 404
    assert await ThreadItem.objects.filter(thread_id=thread_id).acount() == 2


async def test_retrying_an_item_that_is_missing_or_not_a_user_message_fails_before_any_stream(
    user_client,
):
    thread_id, events = await create_thread(user_client)
    user_item, answer = events[1]["item"]["id"], events[-1]["item"]["id"]

    def retry(item_id):
        return ThreadsRetryAfterItemReq(
            params=ThreadRetryAfterItemParams(thread_id=thread_id, item_id=item_id)
        )

    response = await post(user_client, retry("msg_missing"))
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    response = await post(user_client, retry(answer))
    assert response.status_code == 400
    assert response.json() == {
        "detail": f"Item {answer} is not a user message.",
        "code": "invalid_request",
    }
    # Nothing was removed or added; a real retry still works.
    assert await ThreadItem.objects.filter(thread_id=thread_id).acount() == 2
    response = await post(user_client, retry(user_item))
    assert response.status_code == 200
    assert parse_sse(await read_stream(response))[-1]["item"]["content"][0]["text"] == "echo: hello"


async def test_missing_thread_is_404(user_client):
    response = await post(user_client, add_message_req("thr_missing"))
    assert response.status_code == 404
    assert "thr_missing" in response.json()["detail"]


async def test_feedback_is_saved_and_a_second_vote_replaces_the_first(user_client):
    thread_id, events = await create_thread(user_client)
    item_id = events[-1]["item"]["id"]

    def feedback(kind: FeedbackKind, item_ids=None):
        return ItemsFeedbackReq(
            params=ItemFeedbackParams(
                thread_id=thread_id, item_ids=item_ids or [item_id], kind=kind
            )
        )

    response = await post(user_client, feedback("positive"))
    assert response.status_code == 200
    assert response.json() == {}
    response = await post(user_client, feedback("negative"))
    rows = [r async for r in Feedback.objects.values_list("item_id", "user_id", "kind")]
    assert rows == [(item_id, user_client.user.pk, "negative")]

    response = await post(user_client, feedback("positive", [item_id, "msg_nope"]))
    assert response.status_code == 404
    assert await Feedback.objects.filter(kind="positive").acount() == 0


async def test_feedback_on_someone_elses_thread_is_404(user_client, auser_factory):
    thread_id, events = await create_thread(user_client)
    other = AsyncClient()
    await other.aforce_login(await auser_factory())
    request = ItemsFeedbackReq(
        params=ItemFeedbackParams(
            thread_id=thread_id, item_ids=[events[-1]["item"]["id"]], kind="positive"
        )
    )
    response = await post(other, request)
    assert response.status_code == 404
    assert not await Feedback.objects.aexists()


async def test_exception_in_respond_ends_with_the_sdk_error_event(user_client):
    with override_settings(CHATKIT={"SERVER_CLASS": "tests.testapp.server.ScriptedServer"}):
        response = await post(user_client, create_req("fail"))
        events = parse_sse(await read_stream(response))
    assert response.status_code == 200
    assert events[-1]["type"] == "error"
    assert events[-1]["code"] == "stream.error"
    thread_id = events[0]["thread"]["id"]
    # The user's message was saved before the responder broke, and stays.
    assert await ThreadItem.objects.filter(thread_id=thread_id, type="user_message").aexists()
    assert json.loads(json.dumps(events[-1]))["allow_retry"] is True


class FailingServer(EchoServer):
    """``sync_action`` fails the way the action's type says."""

    async def sync_action(self, thread, action, sender, context):
        if action.type == "not-applicable":
            raise ValueError("This action does not apply here.")
        if action.type == "invalid-model":
            TypeAdapter(int).validate_python("not a number")
        if action.type == "unserializable":
            TypeAdapter(object).dump_json(object())  # PydanticSerializationError
        raise RuntimeError("the responder crashed")


@pytest.mark.parametrize(
    ("action", "status", "code", "detail"),
    [
        ("not-applicable", 400, "invalid_request", "This action does not apply here."),
        # pydantic's ValidationError is a ValueError too, but here it is a server bug.
        ("invalid-model", 500, "server_error", "The server failed to answer."),
        # So is an answer it cannot serialize (PydanticSerializationError, a ValueError).
        ("unserializable", 500, "server_error", "The server failed to answer."),
        ("crash", 500, "server_error", "The server failed to answer."),
    ],
)
async def test_errors_inside_the_server_are_answered_as_json(
    user_client, caplog, action, status, code, detail
):
    thread_id, _ = await create_thread(user_client)
    # The test user_client records what got_request_exception receivers see in sys.exc_info().
    user_client.raise_request_exception = False
    request = ThreadsSyncCustomActionReq(
        params=ThreadCustomActionParams(thread_id=thread_id, action=Action(type=action))
    )
    with override_settings(CHATKIT={"SERVER_CLASS": "tests.endpoint.test_requests.FailingServer"}):
        response = await post(user_client, request)
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": detail, "code": code}
    if status == 500:
        # Logged with the traceback, and signalled with the exception, as Django does for
        # views (error reporters hook got_request_exception).
        expected = {"invalid-model": ValidationError, "unserializable": PydanticSerializationError}
        expected = expected.get(action, RuntimeError)
        assert response.exc_info is not None
        assert isinstance(response.exc_info[1], expected)
        record = next(r for r in caplog.records if r.name == "chatkit_django.streaming")
        assert record.exc_info is not None
        assert "threads.sync_custom_action" in record.getMessage()
    else:
        assert response.exc_info is None
