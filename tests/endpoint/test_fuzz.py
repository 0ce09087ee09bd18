"""Fuzzing: the endpoint and the upload views never answer a server error.

Request bodies come from the SDK's own request types (``tests/endpoint/fuzz_requests.py``), damaged
the way a careless or hostile client would. Each one goes through Django's ASGI handler
(the async test client) with a logged-in session, against a fresh set of rows: the user's
threads, items of every kind that a request can name, attachments, and another user's
thread, item and attachment. What counts as a pass:

- a 4xx is JSON in the app's error shape (``{"error": ..., "code": ...}``);
- a success is well formed: JSON that parses, or an SSE stream whose ``data:`` events all
  parse as JSON objects with a ``type``;
- never a 5xx, and nothing logged at ERROR while answering: a crash the SDK turns into a
  ``stream.error`` event inside a 200 is still a crash (it logs the traceback). An error
  event without a logged error (a refusal, such as the SDK's for an action on a non-widget
  item) is a well-formed answer.

``make test`` runs ``CHATKIT_FUZZ_EXAMPLES`` (default 150) examples per test on each
database, derandomized so CI is deterministic; ``make fuzz`` runs many more with a random
seed and prints how many requests were tried and how many server errors were found.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Self
from urllib.parse import quote, urlsplit

import pytest
from asgiref.sync import async_to_sync
from chatkit.types import (
    ClientToolCallItem,
    ImageAttachment,
    StructuredInputFreeform,
    StructuredInputItem,
)
from django.core.files.base import ContentFile
from django.db import transaction
from django.test import AsyncClient, override_settings
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatkit_django._internal.ordering import next_seq
from chatkit_django.attachments import get_attachment_storage
from chatkit_django.models import Attachment, Feedback, Thread, ThreadItem
from tests import sdk_items
from tests.chatkit_client import ENDPOINT, parse_sse
from tests.endpoint.fuzz_requests import HOSTILE_STRINGS, RAW_BODIES, REQUEST_TYPES, encode, mutated
from tests.factories import PDF, PNG
from tests.testapp.permissions import GRANTS, grant

pytestmark = pytest.mark.django_db

EXAMPLES = int(os.environ.get("CHATKIT_FUZZ_EXAMPLES", "150"))
RANDOM = os.environ.get("CHATKIT_FUZZ_RANDOM") == "1"  # make fuzz: a new seed each run
VERBOSE = os.environ.get("CHATKIT_FUZZ_VERBOSE") == "1"  # print every request and its status

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=not RANDOM,
    database=None,
    deadline=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- the rows every example starts from ----------------------------------------

MINE = "thr_fz_mine"  # the fuzzer's thread: messages, widget, pending structured input
TOOL = "thr_fz_tool"  # the fuzzer's thread that ends in a pending client tool call
SHARED = "thr_fz_shared"  # another user's thread the fuzzer may view
OTHERS = "thr_fz_others"  # another user's thread
MY_ITEMS = ["msg_fz_user", "msg_fz_reply", "wdg_fz", "si_fz_pending", "si_fz_answered"]
MY_ATTACHMENTS = ["atc_fz_image", "atc_fz_pdf", "atc_fz_pending"]
OTHER_ITEMS = ["msg_fz_shared", "msg_fz_others"]
OTHER_ATTACHMENTS = ["atc_fz_others"]
KNOWN_IDS = [
    MINE,
    TOOL,
    SHARED,
    OTHERS,
    *MY_ITEMS,
    "tc_fz_pending",
    *MY_ATTACHMENTS,
    *OTHER_ITEMS,
    *OTHER_ATTACHMENTS,
]
IDS = st.one_of(
    st.sampled_from(KNOWN_IDS),
    st.sampled_from(KNOWN_IDS).map(lambda known: known + "\x00"),
    st.sampled_from(KNOWN_IDS).map(str.upper),
    st.sampled_from(HOSTILE_STRINGS),
    st.text(max_size=12),
)


POOLS = {
    "thread_id": [MINE, TOOL, SHARED, OTHERS],
    "item_id": [*MY_ITEMS, "tc_fz_pending", *OTHER_ITEMS],
    "attachment_id": MY_ATTACHMENTS + OTHER_ATTACHMENTS,
}
POOLS["item_ids"] = POOLS["item_id"]
POOLS["attachments"] = POOLS["attachment_id"]


def ids_for(name: str) -> st.SearchStrategy[str]:
    """Mostly the right kind of id for the field, sometimes any id or a hostile one."""
    known = st.sampled_from(POOLS.get(name, KNOWN_IDS))
    return st.one_of(known, known, known, IDS)


def _item_row(item: Any, thread_id: str) -> ThreadItem:
    item = item.model_copy(update={"thread_id": thread_id})
    return ThreadItem(
        id=item.id,
        thread_id=thread_id,
        type=item.type,
        created_at=timezone.now(),
        seq=next_seq(),
        data=item.model_dump(mode="json", by_alias=True),
    )


def _thread_row(thread_id: str, owner: Any) -> Thread:
    return Thread(
        id=thread_id,
        owner=owner,
        title=thread_id,
        created_at=timezone.now() - timedelta(minutes=1),
        seq=next_seq(),
        data={"id": thread_id, "title": thread_id, "created_at": datetime.now().isoformat()},
    )


def _attachment_row(attachment_id: str, owner: Any, mime_type: str, content: bytes | None):
    storage = get_attachment_storage()
    name = storage.save(f"fuzz/{attachment_id}", ContentFile(content)) if content else ""
    data = ImageAttachment(
        id=attachment_id,
        name=f"{attachment_id}.bin",
        mime_type=mime_type,
        preview_url="https://testserver/preview",
    ).model_dump(mode="json", by_alias=True)
    if not mime_type.startswith("image/"):
        data = {k: v for k, v in data.items() if k != "preview_url"} | {"type": "file"}
    return Attachment(
        id=attachment_id,
        owner=owner,
        name=data["name"],
        mime_type=mime_type,
        type=data["type"],
        size=len(content) if content else None,
        file=name,
        upload_nonce="" if content else "pending-nonce",
        uploaded_at=timezone.now() if content else None,
        data=data,
    )


def seed(me: Any, other: Any) -> None:
    """Replace every ChatKit row with the starting set (requests may delete or add rows)."""
    with transaction.atomic():  # one commit per example, not one per statement
        _seed(me, other)


def _seed(me: Any, other: Any) -> None:
    Feedback.objects.all().delete()
    Attachment.objects.all().delete()
    Thread.objects.all().delete()
    Thread.objects.bulk_create(
        [
            _thread_row(MINE, me),
            _thread_row(TOOL, me),
            _thread_row(SHARED, other),
            _thread_row(OTHERS, other),
        ]
    )
    pending = StructuredInputItem(
        id="si_fz_pending",
        thread_id=MINE,
        created_at=datetime.now(),
        status="pending",
        inputs=[StructuredInputFreeform(id="q", question="Why?")],
    )
    tool_call = ClientToolCallItem(
        id="tc_fz_pending",
        thread_id=TOOL,
        created_at=datetime.now(),
        status="pending",
        call_id="call_fz",
        name="get_location",
        arguments={},
    )
    ThreadItem.objects.bulk_create(
        [
            _item_row(sdk_items.user_message(MINE).model_copy(update={"id": "msg_fz_user"}), MINE),
            _item_row(
                sdk_items.assistant_message(MINE).model_copy(update={"id": "msg_fz_reply"}), MINE
            ),
            _item_row(sdk_items.widget(MINE).model_copy(update={"id": "wdg_fz"}), MINE),
            _item_row(
                sdk_items.structured_input(MINE).model_copy(update={"id": "si_fz_answered"}), MINE
            ),
            _item_row(pending, MINE),
            _item_row(tool_call, TOOL),
            _item_row(
                sdk_items.user_message(SHARED).model_copy(update={"id": "msg_fz_shared"}), SHARED
            ),
            _item_row(
                sdk_items.user_message(OTHERS).model_copy(update={"id": "msg_fz_others"}), OTHERS
            ),
        ]
    )
    Attachment.objects.bulk_create(
        [
            _attachment_row("atc_fz_image", me, "image/png", PNG),
            _attachment_row("atc_fz_pdf", me, "application/pdf", PDF),
            _attachment_row("atc_fz_pending", me, "image/png", None),
            _attachment_row("atc_fz_others", other, "image/png", PNG),
        ]
    )


# -- what a good answer is ---------------------------------------------------------


class ErrorLog(logging.Handler):
    """Collects records at ERROR and above from the loggers a crash is reported on."""

    LOGGERS = ("chatkit", "chatkit_django", "django.request", "django.server")

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> Self:
        for name in self.LOGGERS:
            logging.getLogger(name).addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).removeHandler(self)

    def take(self) -> list[str]:
        found = [
            f"{r.name}: {r.getMessage()}"
            + (f" ({r.exc_info[0].__name__}: {r.exc_info[1]})" if r.exc_info else "")
            for r in self.records
        ]
        self.records.clear()
        return found


@dataclass
class Answer:
    status: int
    content_type: str
    body: bytes


def problem_with(answer: Answer, logged: list[str]) -> str | None:
    """Why ``answer`` is not acceptable, or ``None``."""
    if answer.status >= 500:
        return f"{answer.status}: {answer.body[:300]!r} {logged}"
    if logged:
        return f"{answer.status} with logged errors {logged}"
    if answer.status >= 400:
        if answer.content_type != "application/json":
            return f"{answer.status} is not JSON ({answer.content_type}): {answer.body[:200]!r}"
        error = json.loads(answer.body)
        if not (isinstance(error, dict) and error.get("code")):
            return f"{answer.status} without an error code: {error}"
        return None
    if answer.content_type == "text/event-stream":
        events = parse_sse(answer.body)
        if not events or not all(isinstance(e, dict) and e.get("type") for e in events):
            return f"malformed stream: {answer.body[:300]!r}"
        return None
    if answer.content_type == "application/json":
        json.loads(answer.body)
    return None


@dataclass
class Tally:
    """Requests tried and problems found; ``make fuzz`` prints it."""

    name: str
    tried: int = 0
    problems: dict[str, bytes] = field(default_factory=dict)  # first body per kind
    answers: Counter[str] = field(default_factory=Counter)  # "<request> <status>"

    def record(self, body: bytes, status: int, problem: str | None, what: str = "") -> None:
        self.tried += 1
        if VERBOSE:
            print(f"{status} {body[:200]!r}")
        self.answers[f"{what} {status}".strip()] += 1
        if problem is not None:
            self.problems.setdefault(problem[:160], body)

    def report(self) -> str:
        lines = [f"fuzz {self.name}: {self.tried} requests tried, {len(self.problems)} 5xx found"]
        lines.append(
            "  answers: " + ", ".join(f"{k} x{n}" for k, n in sorted(self.answers.items()))
        )
        lines += [f"  {kind}\n    body: {body[:500]!r}" for kind, body in self.problems.items()]
        return "\n".join(lines)


@pytest.fixture
def users(django_user_model: Any) -> Iterator[tuple[Any, Any]]:
    me = django_user_model.objects.create_user(username="fuzzer", password="pw")
    other = django_user_model.objects.create_user(username="other", password="pw")
    saved = set(GRANTS)
    grant(me, "chatkit_django.view_thread", Thread(pk=SHARED))
    yield me, other
    GRANTS.clear()
    GRANTS.update(saved)


@pytest.fixture
def fuzz_client(users: tuple[Any, Any]) -> AsyncClient:
    # A 500 is answered, not raised into the test: it is counted like any other answer.
    client = AsyncClient(raise_request_exception=False)
    client.force_login(users[0])
    return client


def finish(tally: Tally) -> None:
    print(tally.report())  # the figure `make fuzz` shows (with -s)
    assert not tally.problems, tally.report()


# -- the ChatKit endpoint ----------------------------------------------------------


REQUEST_NAMES = {cls.model_fields["type"].default for cls in REQUEST_TYPES}


def _kind(body: bytes) -> str:
    try:
        kind = json.loads(body).get("type")
    except (ValueError, AttributeError, RecursionError):
        return "(not a request)"
    return kind if isinstance(kind, str) and kind in REQUEST_NAMES else "(no known type)"


async def _post(client: AsyncClient, body: bytes) -> Answer:
    response = await client.post(ENDPOINT, body, content_type="application/json")
    if response.streaming:
        content = b"".join([chunk async for chunk in response.streaming_content])
    else:
        content = response.content
    return Answer(response.status_code, response["Content-Type"], content)


@override_settings(CHATKIT={"SERVER_CLASS": "tests.testapp.server.ProtocolServer"})
def test_endpoint_answers_every_request_without_a_server_error(users, fuzz_client):
    tally = Tally("endpoint")
    post = async_to_sync(_post)
    bodies = st.one_of(mutated(ids_for).map(encode), RAW_BODIES)

    @FUZZ_SETTINGS
    @given(body=bodies)
    def run(body: bytes) -> None:
        seed(*users)
        with ErrorLog() as log:
            answer = post(fuzz_client, body)
        tally.record(body, answer.status, problem_with(answer, log.take()), _kind(body))

    run()
    finish(tally)


# -- the upload views --------------------------------------------------------------

# Ids that route to the view (an empty id or one with a slash is Django's own 404 page).
PATH_IDS = st.one_of(
    st.sampled_from(MY_ATTACHMENTS + OTHER_ATTACHMENTS), IDS.filter(lambda i: i and "/" not in i)
)
MIME_TYPES = st.sampled_from(
    ["image/png", "application/pdf", "text/plain", "", "image/png\x00", "x" * 300, "text/ html"]
)
CONTENTS = st.sampled_from([PNG, PDF, b"", b"\x00" * 10, b"<html>hi</html>"])
FILE_NAMES = st.one_of(st.sampled_from(HOSTILE_STRINGS), st.text(max_size=20))


@st.composite
def upload_calls(draw: st.DrawFn) -> dict[str, Any]:
    """One call to an upload view: direct upload, two-phase target, or content."""
    view = draw(st.sampled_from(["direct", "target", "target-created", "content"]))
    call: dict[str, Any] = {"view": view}
    if view == "direct":
        call["field"] = draw(st.sampled_from(["file", "file", "other"]))
        call["name"] = draw(FILE_NAMES)
        call["mime"] = draw(MIME_TYPES)
        call["content"] = draw(CONTENTS)
    elif view.startswith("target"):
        call["id"] = draw(PATH_IDS)
        call["token"] = draw(st.one_of(st.none(), st.sampled_from(HOSTILE_STRINGS), st.text()))
        call["method"] = draw(st.sampled_from(["put", "post"]))
        call["mime"] = draw(MIME_TYPES)
        call["declared"] = draw(st.sampled_from(["image/png", "application/pdf", "text/plain"]))
        call["size"] = draw(st.sampled_from([len(PNG), 0, -1, 2**63, 10]))
        call["content"] = draw(CONTENTS)
    else:
        call["id"] = draw(PATH_IDS)
        call["sig"] = draw(st.one_of(st.none(), st.sampled_from(HOSTILE_STRINGS), st.text()))
    return call


BOUNDARY = "fuzzfuzzfuzz"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def _multipart(field: str, filename: str, mime_type: str, content: bytes) -> bytes:
    """One file part, written by hand: names and types go out as given, even if no test
    client would encode them (lone surrogates become bytes that are not UTF-8)."""

    def raw(value: str) -> bytes:
        return value.encode("utf-8", "surrogatepass")

    return b"".join(
        [
            raw(f"--{BOUNDARY}\r\n"),
            b'Content-Disposition: form-data; name="' + raw(field) + b'"; filename="',
            raw(filename) + b'"\r\n',
            b"Content-Type: " + raw(mime_type) + b"\r\n\r\n",
            content,
            raw(f"\r\n--{BOUNDARY}--\r\n"),
        ]
    )


def _quote(value: str) -> str:
    # Lone surrogates become bytes that are not UTF-8, as a hostile client could send.
    return quote(value, safe="", errors="surrogatepass")


def _target_path(url_or_id: str, token: str | None) -> str:
    if "/" in url_or_id:  # an upload URL from attachments.create
        parts = urlsplit(url_or_id)
        return f"{parts.path}?{parts.query}"
    path = f"/chatkit/attachments/{_quote(url_or_id)}/upload/"
    return path if token is None else f"{path}?token={_quote(token)}"


async def _upload(client: AsyncClient, call: dict[str, Any]) -> Answer:
    view = call["view"]
    if view == "direct":
        body = _multipart(call["field"], call["name"], call["mime"], call["content"])
        response = await client.post("/chatkit/upload/", body, content_type=MULTIPART)
    elif view.startswith("target"):
        target = call["id"]
        if view == "target-created":
            # A real two-phase upload: attachments.create, then the bytes to its URL.
            create = {
                "type": "attachments.create",
                "params": {"name": "f", "size": call["size"], "mime_type": call["declared"]},
            }
            created = await _post(client, encode(create))
            if created.status != 200:
                return created
            descriptor = json.loads(created.body).get("upload_descriptor") or {}
            target = descriptor.get("url") or call["id"]
        path = _target_path(target, call["token"])
        if call["method"] == "put":
            response = await client.put(path, call["content"], content_type=call["mime"] or "x/y")
        else:
            body = _multipart("file", "f", call["mime"], call["content"])
            response = await client.post(path, body, content_type=MULTIPART)
    else:
        path = f"/chatkit/attachments/{_quote(call['id'])}/content/"
        if call["sig"] is not None:
            path += f"?sig={_quote(call['sig'])}"
        response = await client.get(path)
    if response.streaming:
        content = b"".join([chunk async for chunk in response.streaming_content])
    else:
        content = response.content
    return Answer(response.status_code, response.get("Content-Type", ""), content)


@override_settings(CHATKIT={"SERVER_CLASS": "tests.testapp.server.ProtocolServer"})
def test_upload_views_answer_every_request_without_a_server_error(users, fuzz_client):
    tally = Tally("uploads")
    upload = async_to_sync(_upload)

    @FUZZ_SETTINGS
    @given(call=upload_calls())
    def run(call: dict[str, Any]) -> None:
        seed(*users)
        with ErrorLog() as log:
            answer = upload(fuzz_client, call)
        problem = problem_with(answer, log.take())
        tally.record(repr(call).encode(), answer.status, problem, call["view"])

    run()
    finish(tally)
