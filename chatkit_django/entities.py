"""@-mentions backed by Django models.

A project describes each kind of thing users may mention as an ``EntitySource`` subclass and
lists it in ``CHATKIT['ENTITY_SOURCES']``. This module is the registry (``EntitySource``,
``get_entity_sources()``, ``resolve_entity()``); the same source then serves three callers:

- ``EntitySearchView`` (``chatkit_django.views``) answers ChatKit.js ``entities.onTagSearch``
  with ``Entity`` JSON;
- ``EntityPreviewView`` (``chatkit_django.views``) answers ``entities.onRequestPreview`` with
  ``{"preview": BasicRoot}``;
- ``DjangoThreadItemConverter.tag_to_message_content`` (``chatkit_django.agents``) turns a tag
  into a summary the model can trust.

Every lookup goes through ``EntitySource.get_queryset(user)``, so an entity a user may not see
is never found, never previewed and never summarised for the model. Entity ids are
``"<source name>:<primary key>"``; the ``data`` a client sends back with a tag is never trusted.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from chatkit.widgets import WidgetRoot, WidgetTemplate
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import connections, models

from chatkit_django._internal.nul import names_nothing
from chatkit_django.conf import chatkit_settings, on_reload

# The default preview: a Basic root with the entity's title and its summary. Built with the
# SDK's WidgetTemplate (named widget classes are deprecated in favour of templates).
DEFAULT_PREVIEW_TEMPLATE = WidgetTemplate(
    {
        "version": "1.0",
        "name": "chatkit_django_entity_preview",
        "template": (
            '{"type": "Basic", "gap": 2, "children": ['
            '{"type": "Title", "value": {{ title | tojson }}, "size": "sm"},'
            "{% if group %}"
            '{"type": "Caption", "value": {{ group | tojson }}},'
            "{% endif %}"
            '{"type": "Text", "value": {{ summary | tojson }}}'
            "]}"
        ),
        "jsonSchema": {},
    }
)

if TYPE_CHECKING:
    from chatkit_django.context import UserLike


class EntitySource:
    """One kind of mentionable thing, backed by a model.

    Set ``name`` and ``model`` (or override ``get_queryset``), list the fields to search in
    ``search_fields``, and override the ``get_*`` methods to change how an object is shown to
    the user and summarised for the model.
    """

    name: ClassVar[str] = ""
    """Unique key of the source; the prefix of its entity ids."""
    model: ClassVar[type[models.Model] | None] = None
    search_fields: ClassVar[Sequence[str]] = ()
    """Fields matched case-insensitively (``icontains``) against the search query."""
    ordering: ClassVar[Sequence[str]] = ("-pk",)
    group: ClassVar[str | None] = None
    """Heading the composer groups this source's results under."""
    icon: ClassVar[str | None] = None
    """A ChatKit icon name (``"document"``, ``"globe"``...)."""
    interactive: ClassVar[bool] = True
    """Whether ChatKit.js asks for previews and reports clicks for these entities."""

    def get_queryset(self, user: UserLike) -> models.QuerySet[Any]:
        """The objects ``user`` may mention. Override to filter per user: the default is all."""
        if self.model is None:
            raise ImproperlyConfigured(
                f"{type(self).__name__} needs a model or its own get_queryset(user)."
            )
        return self.model._default_manager.all()

    def search(self, user: UserLike, query: str) -> models.QuerySet[Any]:
        """Objects matching ``query``, in ``ordering``; an empty query matches everything."""
        queryset = self.get_queryset(user)
        if query:
            condition = models.Q()
            for field in self.search_fields:
                condition |= models.Q(**{f"{field}__icontains": query})
            queryset = queryset.filter(condition)
        return queryset.order_by(*self.ordering)

    def entity_id(self, obj: models.Model) -> str:
        return f"{self.name}:{obj.pk}"

    def get_title(self, obj: models.Model) -> str:
        return str(obj)

    def get_data(self, obj: models.Model) -> dict[str, str]:
        """Extra string values passed to the client's entity callbacks."""
        return {}

    def to_entity(self, obj: models.Model) -> dict[str, Any]:
        """The ChatKit.js ``Entity`` for ``obj``."""
        entity: dict[str, Any] = {
            "id": self.entity_id(obj),
            "title": self.get_title(obj),
            "interactive": self.interactive,
            "data": {"source": self.name, **self.get_data(obj)},
        }
        if self.group:
            entity["group"] = str(self.group)
        if self.icon:
            entity["icon"] = self.icon
        return entity

    def summarize(self, obj: models.Model) -> str:
        """What the model is told about a mentioned object. Keep it short; the title by default.

        This and the other ``get_*`` methods run in async code: load what they need in
        ``get_queryset`` (``select_related``), since lazy relation access would raise.
        """
        return self.get_title(obj)

    def get_preview(self, obj: models.Model) -> WidgetRoot | None:
        """The hover preview, or ``None`` for no preview."""
        return DEFAULT_PREVIEW_TEMPLATE.build(
            {
                "title": self.get_title(obj),
                "group": str(self.group or ""),
                "summary": self.summarize(obj),
            }
        )

    def clean_pk(self, pk: str, queryset: models.QuerySet[Any]) -> Any | None:
        """``pk`` as the primary key's Python value, or ``None`` if no row can have it.

        The pk field's ``to_python`` and validators decide the shape (``"01"`` is ``1``,
        ``"abc"`` is nothing for an integer key), and the database's range for integer
        columns bounds it: a lookup never fails on a malformed or huge key, and ids that
        name the same row resolve alike everywhere.
        """
        field = queryset.model._meta.pk
        while field.remote_field is not None:  # a parent link: the key is the parent's
            field = field.target_field
        try:
            value = field.to_python(pk)
            field.run_validators(value)
        except (ValidationError, ValueError, TypeError):
            return None
        if value is None:
            return None
        if isinstance(field, models.IntegerField):
            low, high = connections[queryset.db].ops.integer_field_range(field.get_internal_type())
            if (low is not None and value < low) or (high is not None and value > high):
                return None
        return value

    async def aget(self, user: UserLike, pk: str) -> models.Model | None:
        """The object ``pk`` if ``user`` may see it, else ``None``."""
        queryset = self.get_queryset(user)
        value = self.clean_pk(pk, queryset)
        if value is None:
            return None
        return await queryset.filter(pk=value).afirst()


@functools.cache
def get_entity_sources() -> dict[str, EntitySource]:
    """``CHATKIT['ENTITY_SOURCES']``, instantiated once and keyed by name."""
    sources: dict[str, EntitySource] = {}
    for source_class in chatkit_settings.ENTITY_SOURCES or []:
        source = source_class()
        if not source.name or ":" in source.name:
            raise ImproperlyConfigured(
                f"{source_class.__name__}.name must be a non-empty string without ':'."
            )
        if source.name in sources:
            raise ImproperlyConfigured(f"Two entity sources are named {source.name!r}.")
        sources[source.name] = source
    return sources


on_reload(get_entity_sources.cache_clear)


def split_entity_id(entity_id: str) -> tuple[EntitySource, str] | None:
    """The source and primary key an entity id names, or ``None`` for an unknown source."""
    name, sep, pk = entity_id.partition(":")
    source = get_entity_sources().get(name)
    if not sep or not pk or source is None or names_nothing(pk):
        return None
    return source, pk


async def resolve_entity(
    entity_id: str, user: UserLike
) -> tuple[EntitySource, models.Model] | None:
    """The source and object behind ``entity_id``, if it exists and ``user`` may see it."""
    found = split_entity_id(entity_id)
    if found is None:
        return None
    source, pk = found
    obj = await source.aget(user, pk)
    return None if obj is None else (source, obj)
