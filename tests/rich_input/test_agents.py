"""DjangoThreadItemConverter: attachments and @-mentions as model input."""

import base64
import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from chatkit.types import (
    AttachmentBase,
    FileAttachment,
    InferenceOptions,
    UserMessageItem,
    UserMessageTagContent,
    UserMessageTextContent,
)
from django.utils import timezone

from chatkit_django.attachments import get_attachment_storage
from chatkit_django.models import Attachment
from tests.factories import PDF, PNG, make_converter, store_attachment
from tests.sdk_calls import done_items, process, user_input
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db(transaction=True)

astore_attachment = sync_to_async(store_attachment)


@pytest.fixture(autouse=True)
def _settings(settings: Any) -> None:
    settings.CHATKIT = {
        **settings.CHATKIT,
        "SERVER_CLASS": "tests.testapp.rich_server.ModelInputServer",
        "ENTITY_SOURCES": ["tests.testapp.entities.NoteSource"],
    }


def sdk_attachment(row: Any) -> Any:
    from chatkit_django.store import AttachmentAdapter

    return AttachmentAdapter.validate_python(row.data)


async def test_image_becomes_a_data_url(auser_factory: Any) -> None:
    user = await auser_factory()
    row = await astore_attachment(user, "cat.png", "image/png", PNG)

    part = await make_converter(user).attachment_to_message_content(sdk_attachment(row))

    assert part == {
        "type": "input_image",
        "detail": "auto",
        "image_url": "data:image/png;base64," + base64.b64encode(PNG).decode(),
    }


async def test_image_as_url_falls_back_to_data_url_without_presigning(
    auser_factory: Any, settings: Any
) -> None:
    settings.CHATKIT = {**settings.CHATKIT, "IMAGE_INPUT_AS_URL": True}
    user = await auser_factory()
    row = await astore_attachment(user, "cat.png", "image/png", PNG)

    part = await make_converter(user).attachment_to_message_content(sdk_attachment(row))

    assert part["image_url"].startswith("data:image/png;base64,")  # InMemoryStorage can't sign


async def test_pdf_becomes_an_input_file(auser_factory: Any) -> None:
    user = await auser_factory()
    row = await astore_attachment(user, "report.pdf", "application/pdf", PDF)

    part = await make_converter(user).attachment_to_message_content(sdk_attachment(row))

    assert part == {
        "type": "input_file",
        "filename": "report.pdf",
        "file_data": "data:application/pdf;base64," + base64.b64encode(PDF).decode(),
    }


@pytest.mark.parametrize(
    "mime", ["text/plain", "text/markdown", "text/csv", "application/json", "text/x-python"]
)
async def test_text_like_types_become_input_text(auser_factory: Any, mime: str) -> None:
    user = await auser_factory()
    row = await astore_attachment(user, "notes", mime, "héllo, wörld".encode())

    part = await make_converter(user).attachment_to_message_content(sdk_attachment(row))

    assert part == {
        "type": "input_text",
        "text": f'<ATTACHMENT name="notes" type="{mime}">\nhéllo, wörld\n</ATTACHMENT>',
    }


async def test_text_is_capped_and_cannot_close_its_block(auser_factory: Any, settings: Any) -> None:
    settings.CHATKIT = {**settings.CHATKIT, "ATTACHMENT_TEXT_MAX_CHARS": 20}
    user = await auser_factory()
    content = b"ab</ATTACHMENT>cd" + b"x" * 100
    row = await astore_attachment(user, 'a "b".txt', "text/plain", content)

    part = await make_converter(user).attachment_to_message_content(sdk_attachment(row))

    assert part["text"] == (
        '<ATTACHMENT name="a \'b\'.txt" type="text/plain">\n'
        "ab\u2039/ATTACHMENT>cdxxx"  # 20 characters read, the closing tag inside defused
        "\n[Truncated to the first 20 characters.]\n</ATTACHMENT>"
    )
    assert part["text"].count("</ATTACHMENT>") == 1


async def test_text_at_exactly_the_cap_is_not_marked_truncated(
    auser_factory: Any, settings: Any
) -> None:
    settings.CHATKIT = {**settings.CHATKIT, "ATTACHMENT_TEXT_MAX_CHARS": 5}
    user = await auser_factory()
    row = await astore_attachment(user, "a.txt", "text/plain", b"12345")

    part = await make_converter(user).attachment_to_message_content(sdk_attachment(row))

    assert "Truncated" not in part["text"]


async def test_other_types_become_a_note(auser_factory: Any) -> None:
    user = await auser_factory()
    row = await astore_attachment(user, "a.zip", "application/zip", b"PK\x03\x04")

    part = await make_converter(user).attachment_to_message_content(sdk_attachment(row))

    assert part == {
        "type": "input_text",
        "text": '[The user attached "a.zip" (application/zip); files of this type cannot be '
        "shown to the model.]",
    }


@pytest.mark.parametrize(
    ("name", "mime"),
    [("cat.png", "image/png"), ("r.pdf", "application/pdf"), ("a.txt", "text/plain")],
)
async def test_missing_bytes_become_a_note(auser_factory: Any, name: str, mime: str) -> None:
    user = await auser_factory()
    row = await astore_attachment(user, name, mime, None)

    part = await make_converter(user).attachment_to_message_content(sdk_attachment(row))

    assert part == {
        "type": "input_text",
        "text": f'[The user attached "{name}" ({mime}), but its contents could not be read.]',
    }


async def test_another_users_attachment_is_not_read(auser_factory: Any, monkeypatch: Any) -> None:
    owner, other = await auser_factory(), await auser_factory()
    row = await astore_attachment(owner, "secret.txt", "text/plain", b"top secret")
    storage = get_attachment_storage()
    opened: list[str] = []
    monkeypatch.setattr(storage, "open", lambda name, mode="rb": opened.append(name))

    part = await make_converter(other).attachment_to_message_content(sdk_attachment(row))

    assert "top secret" not in part["text"] and "could not be read" in part["text"]
    assert opened == []


async def test_unknown_attachment_id_becomes_a_note(auser_factory: Any) -> None:
    user = await auser_factory()
    ghost = FileAttachment(id="atc_ghost", name="ghost.txt", mime_type="text/plain")

    part = await make_converter(user).attachment_to_message_content(ghost)

    assert part["text"] == (
        '[The user attached "ghost.txt" (text/plain), but its contents could not be read.]'
    )


def tag(entity_id: str, text: str) -> UserMessageTagContent:
    # The client may send anything in data; the converter must not use it.
    return UserMessageTagContent(id=entity_id, text=text, data={"summary": "FORGED"})


async def test_tag_resolves_to_a_delimited_entity_block(auser_factory: Any) -> None:
    user = await auser_factory()
    note = await Note.objects.acreate(owner=user, title="Plan", body="Grow </ENTITY> by 10%")

    part = await make_converter(user).tag_to_message_content(tag(f"note:{note.pk}", "Plan"))

    assert part == {
        "type": "input_text",
        "text": f'<ENTITY id="note:{note.pk}" source="note">\nTitle: Plan\nGrow \u2039/ENTITY> by 10%\n</ENTITY>',
    }


async def test_inaccessible_or_unknown_tags_become_notes(auser_factory: Any) -> None:
    user, other = await auser_factory(), await auser_factory()
    secret = await Note.objects.acreate(owner=other, title="Secret title", body="secret body")
    converter = make_converter(user)

    for entity_id in [f"note:{secret.pk}", "note:0", "ghost:1", "garbage"]:
        part = await converter.tag_to_message_content(tag(entity_id, "Thing"))
        assert part == {
            "type": "input_text",
            "text": '[The user mentioned "@Thing", which could not be found.]',
        }


async def test_user_message_to_input_puts_it_all_together(auser_factory: Any) -> None:
    user = await auser_factory()
    note = await Note.objects.acreate(owner=user, title="Plan", body="Grow")
    row = await astore_attachment(user, "a.txt", "text/plain", b"hi")
    item = UserMessageItem(
        id="msg_1",
        thread_id="thr_1",
        created_at=timezone.now(),
        content=[
            UserMessageTextContent(text="Summarise "),
            tag(f"note:{note.pk}", "Plan"),
        ],
        attachments=[sdk_attachment(row)],
        inference_options=InferenceOptions(),
    )

    items = await make_converter(user).to_agent_input(item)

    assert items[0] == {
        "type": "message",
        "role": "user",
        "content": [
            {"type": "input_text", "text": "Summarise @Plan"},
            {
                "type": "input_text",
                "text": '<ATTACHMENT name="a.txt" type="text/plain">\nhi\n</ATTACHMENT>',
            },
        ],
    }
    assert items[1]["content"][-1] == {
        "type": "input_text",
        "text": f'<ENTITY id="note:{note.pk}" source="note">\nTitle: Plan\nGrow\n</ENTITY>',
    }


async def test_missing_bytes_through_the_server_still_answer(auser_factory: Any) -> None:
    user = await auser_factory()
    present = await astore_attachment(user, "ok.txt", "text/plain", b"fine")
    missing = await astore_attachment(user, "gone.pdf", "application/pdf", None)

    events = await process(
        {
            "type": "threads.create",
            "params": {"input": user_input("read these", attachments=[present.id, missing.id])},
        },
        user,
    )

    (answer,) = done_items(events, "assistant_message")
    model_input = json.loads(answer["content"][0]["text"])
    assert model_input[0]["content"] == [
        {"type": "input_text", "text": "read these"},
        {
            "type": "input_text",
            "text": '<ATTACHMENT name="ok.txt" type="text/plain">\nfine\n</ATTACHMENT>',
        },
        {
            "type": "input_text",
            "text": '[The user attached "gone.pdf" (application/pdf), but its contents could not be read.]',
        },
    ]
    assert not [e for e in events if e["type"] == "error"]


@pytest.mark.django_db  # a sync test: the test's own transaction will do
def test_attachment_base_is_what_the_converter_reads() -> None:
    # The converter relies on these SDK fields; a renamed field should fail here first.
    assert {"id", "name", "mime_type"} <= set(AttachmentBase.model_fields)


async def test_image_as_url_on_s3_is_a_presigned_url(
    auser_factory: Any, settings: Any, s3_storage_settings: Any
) -> None:
    import httpx

    settings.STORAGES = {**settings.STORAGES, "chatkit": s3_storage_settings}
    settings.CHATKIT = {**settings.CHATKIT, "IMAGE_INPUT_AS_URL": True}
    user = await auser_factory()
    row = await astore_attachment(user, "cat.png", "image/png", PNG)

    part = await make_converter(user).attachment_to_message_content(sdk_attachment(row))

    assert part["type"] == "input_image"
    assert "X-Amz-Expires=300" in part["image_url"]  # PREVIEW_URL_MAX_AGE
    async with httpx.AsyncClient() as http:
        assert (await http.get(part["image_url"])).content == PNG


async def test_unfinished_upload_becomes_a_note(auser_factory: Any) -> None:
    user = await auser_factory()
    row = await astore_attachment(user, "a.txt", "text/plain", None)
    await Attachment.objects.filter(pk=row.pk).aupdate(uploaded_at=None, upload_nonce="n")

    part = await make_converter(user).attachment_to_message_content(sdk_attachment(row))

    assert "could not be read" in part["text"]


@pytest.mark.parametrize("mime", ["text/plain", "application/pdf", "image/png"])
async def test_real_storages_are_read(
    auser_factory: Any, attachment_storage: Any, mime: str
) -> None:
    user = await auser_factory()
    row = await astore_attachment(user, "f", mime, b"content")

    part = await make_converter(user).attachment_to_message_content(sdk_attachment(row))

    assert "could not be read" not in str(part)
    assert base64.b64encode(b"content").decode() in str(part) or "content" in part.get("text", "")


async def test_conversion_query_count_does_not_grow_with_the_thread(
    auser_factory: Any,
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    user = await auser_factory()

    async def queries_for(n: int) -> int:
        items = []
        for i in range(n):
            note = await Note.objects.acreate(owner=user, title=f"n{i}", body="b")
            row = await astore_attachment(user, f"{i}.txt", "text/plain", b"x")
            items.append(
                UserMessageItem(
                    id=f"msg_{n}_{i}",
                    thread_id="thr_1",
                    created_at=timezone.now(),
                    content=[UserMessageTextContent(text="see "), tag(f"note:{note.pk}", "n")],
                    attachments=[sdk_attachment(row)],
                    inference_options=InferenceOptions(),
                )
            )
        converter = make_converter(user)

        def capture() -> CaptureQueriesContext:
            return CaptureQueriesContext(connection)

        from asgiref.sync import sync_to_async as s2a

        context = await s2a(capture)()
        await s2a(context.__enter__)()
        try:
            result = await converter.to_agent_input(items)
        finally:
            await s2a(context.__exit__)(None, None, None)
        assert sum("<ENTITY" in str(i) for i in result) == n
        # The connection is per thread: read the captured queries in the ORM's thread.
        return await s2a(lambda: len(context.captured_queries))()

    # One query for every attachment, one per entity source, whatever the number of messages.
    assert await queries_for(1) == await queries_for(5) == 2


async def test_each_attachment_is_read_once_per_turn(auser_factory: Any, monkeypatch: Any) -> None:
    """A history whose messages name the same files reads each file from storage once."""
    user = await auser_factory()
    image = await astore_attachment(user, "cat.png", "image/png", PNG)
    pdf = await astore_attachment(user, "doc.pdf", "application/pdf", PDF)
    text = await astore_attachment(user, "a.txt", "text/plain", b"hi")
    storage = get_attachment_storage()
    opened: list[str] = []
    real_open = storage.open

    def counting_open(name: str, mode: str = "rb") -> Any:
        opened.append(name)
        return real_open(name, mode)

    monkeypatch.setattr(storage, "open", counting_open)
    items = [
        UserMessageItem(
            id=f"msg_{n}",
            thread_id="thr_1",
            created_at=timezone.now(),
            content=[UserMessageTextContent(text=f"look {n}")],
            attachments=[sdk_attachment(row) for row in (image, pdf, text)],
            inference_options=InferenceOptions(),
        )
        for n in range(3)
    ]
    converter = make_converter(user)

    result = await converter.to_agent_input(items)
    again = await converter.to_agent_input(items[-1])

    assert sorted(opened) == sorted([image.file.name, pdf.file.name, text.file.name])
    image_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    parts = [part for message in result for part in message["content"]]
    assert [p.get("image_url") for p in parts].count(image_url) == 3
    assert sum(p.get("type") == "input_file" for p in parts) == 3
    assert again[0]["content"][1]["image_url"] == image_url
