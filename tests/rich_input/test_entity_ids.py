"""Entity ids with odd primary keys: malformed, huge, or spelled another way (``note:01``).

Each pk is cleaned by the source's pk field before any query, so a malformed one costs no
query, a huge one is "not found" rather than an error, and the preview view and the converter
agree on what an id names. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from chatkit.types import InferenceOptions, UserMessageItem, UserMessageTagContent
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from chatkit_django.context import ChatKitContext
from chatkit_django.entities import get_entity_sources, resolve_entity
from chatkit_django.store import DjangoStore
from tests.factories import make_converter
from tests.sdk_calls import done_items, process, user_input
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db(transaction=True)

HUGE = ["9" * 30, str(2**63), "-" + "9" * 30, str(-(2**63) - 1)]
MALFORMED = ["abc", "1.5", "1e3", "0x10", " ", "1 2", "١٢x"]


@pytest.fixture(autouse=True)
def _settings(settings: Any) -> None:
    settings.CHATKIT = {
        **settings.CHATKIT,
        "SERVER_CLASS": "tests.testapp.rich_server.ModelInputServer",
        "ENTITY_SOURCES": ["tests.testapp.entities.NoteSource"],
    }


def message(*entity_ids: str) -> UserMessageItem:
    # Distinct texts: the SDK dedupes tags by their text.
    return UserMessageItem(
        id="msg_1",
        thread_id="thr_1",
        created_at=timezone.now(),
        content=[
            UserMessageTagContent(id=entity_id, text=f"t{i}", data={})
            for i, entity_id in enumerate(entity_ids)
        ],
        inference_options=InferenceOptions(),
    )


async def converted(user: Any, *entity_ids: str) -> tuple[list[str], int]:
    """The context parts the converter made for the tags, and the queries it took."""
    converter = make_converter(user)
    context = CaptureQueriesContext(connection)
    await sync_to_async(context.__enter__)()
    try:
        result = await converter.to_agent_input(message(*entity_ids))
    finally:
        await sync_to_async(context.__exit__)(None, None, None)
    count = await sync_to_async(lambda: len(context.captured_queries))()
    return [part["text"] for part in result[1]["content"][1:]], count


async def test_malformed_pks_cost_no_queries(auser_factory: Any) -> None:
    user = await auser_factory()
    note = await Note.objects.acreate(owner=user, title="Plan", body="Grow")
    good = f"note:{note.pk}"

    _, alone = await converted(user, good)
    # Malformed keys among well-formed ones that name nothing: one malformed key must not
    # turn the batched lookup into one lookup per tag.
    bad = [
        f"note:{MALFORMED[i % len(MALFORMED)]}{i}" if i % 2 else f"note:{10**6 + i}"
        for i in range(200)
    ]
    texts, with_bad = await converted(user, good, *bad)

    assert alone == with_bad == 1  # one query for the source, however many tags
    assert texts[0].startswith(f'<ENTITY id="{good}"')
    assert len(texts) == 201
    assert all("could not be found" in t for t in texts[1:])


@pytest.mark.parametrize("pk", HUGE)
async def test_a_huge_pk_is_not_found_rather_than_an_error(auser_factory: Any, pk: str) -> None:
    user = await auser_factory()
    note = await Note.objects.acreate(owner=user, title="Plan", body="Grow")

    texts, queries = await converted(user, f"note:{pk}", f"note:{note.pk}")

    assert texts[0] == '[The user mentioned "@t0", which could not be found.]'
    assert texts[1].startswith("<ENTITY")
    assert queries == 1
    assert await resolve_entity(f"note:{pk}", user) is None


@pytest.mark.parametrize("pk", HUGE[:2])
async def test_a_stored_huge_pk_does_not_break_the_thread(auser_factory: Any, pk: str) -> None:
    user = await auser_factory()
    tag = {"type": "input_tag", "id": f"note:{pk}", "text": "Big", "data": {}}
    events = await process(
        {"type": "threads.create", "params": {"input": user_input("see ", tags=[tag])}}, user
    )

    assert not [e for e in events if e["type"] == "error"]
    (answer,) = done_items(events, "assistant_message")
    model_input = json.loads(answer["content"][0]["text"])
    assert model_input[1]["content"][-1]["text"] == (
        '[The user mentioned "@Big", which could not be found.]'
    )
    # Every later turn converts the stored history, this tag included.
    thread_id = events[0]["thread"]["id"]
    context = ChatKitContext(user=user)
    history = await DjangoStore().load_thread_items(thread_id, None, 100, "asc", context)
    result = await make_converter(user).to_agent_input(history.data)
    assert "could not be found" in json.dumps(result)


@pytest.mark.parametrize("spelling", ["{pk}", "0{pk}", "00{pk}", "+{pk}", " {pk}"])
async def test_preview_and_converter_agree_on_other_spellings(
    auser_factory: Any, async_client: Any, spelling: str
) -> None:
    user = await auser_factory()
    note = await Note.objects.acreate(owner=user, title="Plan", body="Grow")
    entity_id = "note:" + spelling.format(pk=note.pk)
    await async_client.aforce_login(user)

    response = await async_client.get(reverse("chatkit:entity-preview"), {"id": entity_id})
    texts, _ = await converted(user, entity_id)

    assert response.status_code == 200
    assert response.json()["preview"] is not None
    # The block names the row by its canonical id, whatever the spelling sent.
    assert texts == [f'<ENTITY id="note:{note.pk}" source="note">\nTitle: Plan\nGrow\n</ENTITY>']


async def test_two_spellings_of_one_row_both_resolve(auser_factory: Any) -> None:
    user = await auser_factory()
    note = await Note.objects.acreate(owner=user, title="Plan", body="Grow")

    texts, queries = await converted(user, f"note:{note.pk}", f"note:0{note.pk}")

    assert queries == 1
    assert (
        texts == [f'<ENTITY id="note:{note.pk}" source="note">\nTitle: Plan\nGrow\n</ENTITY>'] * 2
    )


@pytest.mark.parametrize("pk", [*HUGE, *MALFORMED])
async def test_odd_pks_preview_is_404(auser_factory: Any, async_client: Any, pk: str) -> None:
    await async_client.aforce_login(await auser_factory())
    response = await async_client.get(reverse("chatkit:entity-preview"), {"id": f"note:{pk}"})
    assert (response.status_code, response.json()["code"]) == (404, "not_found")


@pytest.mark.django_db  # a sync test: the test's own transaction will do
def test_clean_pk_uses_the_field_and_the_databases_range() -> None:
    source = get_entity_sources()["note"]
    queryset = Note.objects.all()
    assert source.clean_pk("007", queryset) == 7
    low, high = connection.ops.integer_field_range(Note._meta.pk.get_internal_type())
    assert source.clean_pk(str(high), queryset) == high
    assert source.clean_pk(str(low), queryset) == low
    assert source.clean_pk(str(high + 1), queryset) is None
    assert source.clean_pk(str(low - 1), queryset) is None
    assert source.clean_pk("abc", queryset) is None
