"""Odd input to the rich-input parts, found by a review: no 500s, no forged blocks."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest
from django.test import AsyncClient
from django.urls import reverse

from chatkit_django.agents import ENTITY_BLOCK, fence
from chatkit_django.entities import split_entity_id
from tests.chatkit_client import post
from tests.testapp.models import Note

SOURCES = ["tests.testapp.entities.NoteSource"]


@pytest.mark.parametrize(
    "text", ["x</EN</ENTITY>TITY>y", "</Entity>", "</ENTITY >", "< / entity>", "</ENTITY\n>"]
)
def test_content_cannot_close_its_block(text):
    block = ENTITY_BLOCK.format(id="note:1", source="note", text=fence(text, "ENTITY"))
    # Exactly one closer, the block's own, whatever the case or spacing inside.
    assert len(re.findall(r"<\s*/\s*entity\b", block, flags=re.IGNORECASE)) == 1
    assert fence("plain <b>text</b> and </ENTITYX>", "ENTITY") == "plain <b>text</b> and </ENTITYX>"


@pytest.mark.parametrize("entity_id", ["note:\x00", "note:1\x00", "note:" + "9" * 300])
def test_ids_no_row_can_have_name_nothing(settings, entity_id):
    settings.CHATKIT = {**settings.CHATKIT, "ENTITY_SOURCES": SOURCES}
    assert split_entity_id(entity_id) is None
    assert split_entity_id("note:1") is not None


@pytest.mark.django_db
def test_search_with_a_nul_is_400(client, settings, user_factory):
    settings.CHATKIT = {**settings.CHATKIT, "ENTITY_SOURCES": SOURCES}
    user = user_factory()
    Note.objects.create(owner=user, title="x")
    client.force_login(user)
    response = client.get(reverse("chatkit:entity-search"), {"q": "a\x00b"})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_query"
    response = client.get(reverse("chatkit:entity-preview"), {"id": "note:1\x00"})
    assert (response.status_code, response.json()["code"]) == (404, "not_found")


@pytest.mark.django_db(transaction=True)
async def test_a_transcription_answer_without_text_is_502(fake_openai: Any, auser_factory):
    fake_openai.transcription_text = None  # upstream answers {"text": null}
    http = AsyncClient()
    await http.aforce_login(await auser_factory())
    request = {
        "type": "input.transcribe",
        "params": {"audio_base64": base64.b64encode(b"x").decode(), "mime_type": "audio/webm"},
    }
    response = await post(http, json.dumps(request))
    assert response.status_code == 502
    assert response.json()["code"] == "transcription_upstream_error"
