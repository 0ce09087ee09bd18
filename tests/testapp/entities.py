"""Entity sources the tests register through CHATKIT['ENTITY_SOURCES']."""

from typing import Any

from django.db import models

from chatkit_django.entities import EntitySource
from tests.testapp.models import Note


class NoteSource(EntitySource):
    """Each user mentions their own notes."""

    name = "note"
    model = Note
    search_fields = ("title", "body")
    ordering = ("title", "pk")
    group = "Notes"
    icon = "document"

    def get_queryset(self, user: Any) -> models.QuerySet[Note]:
        return Note.objects.filter(owner=user)

    def summarize(self, obj: Note) -> str:
        return obj.body


class PublicNoteSource(EntitySource):
    """Every note, for anyone, without a preview: the defaults of EntitySource."""

    name = "public"
    model = Note
    search_fields = ("title",)
    interactive = False

    def get_preview(self, obj: Any) -> None:
        return None
